"""The demo page in a real browser: Debian's Chromium driven by Playwright,
against `python -m experiments.serve` on a free localhost port with a tiny
trained run."""

import os
import subprocess
import sys
import time

import pytest

from conftest import BROWSER_ARGS
from conftest import CHROMIUM
from conftest import cli_command
from conftest import cli_env
from conftest import free_port
from conftest import REPO
from conftest import synthetic_lyrics
from jaylyrics_jax.data import rhyme

def _start_server(workdir, corpus, cache, port, log, deadline=180):
  """Starts the server; returns it once it says it is ready."""
  out = open(log, 'w', encoding='utf-8')  # pylint: disable=consider-using-with
  proc = subprocess.Popen(
      cli_command('serve', f'--workdir={workdir}', f'--corpus={corpus}',
                  f'--port={port}', cache=cache),
      cwd=REPO, env=cli_env(), stdout=out, stderr=subprocess.STDOUT)
  start = time.monotonic()
  while time.monotonic() - start < deadline and proc.poll() is None:
    with open(log, encoding='utf-8') as f:
      if 'Ready in' in f.read():
        return proc
    time.sleep(0.5)
  proc.kill()
  with open(log, encoding='utf-8') as f:
    raise AssertionError('the server did not start:\n' + f.read())


def drive_page(url: str, seed: str, unknown: str, screenshot: str) -> dict:
  """What a user does on the page; returns what they saw."""
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  seen = {}
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                args=BROWSER_ARGS)
    try:
      page = browser.new_context().new_page()  # A fresh profile.
      page.set_default_timeout(60_000)
      page.goto(url)
      page.fill('#seed', seed)
      page.fill('#lines', '4')
      page.fill('#rhyme', 'auto')
      page.click('#go')
      page.wait_for_function(
          "document.querySelectorAll('#out li').length === 4")
      lines = page.locator('#out li .text')
      seen['lines'] = [lines.nth(i).inner_text() for i in range(4)]
      seen['marked'] = page.locator('#out li mark.rhyme').count()
      seen['finals'] = [page.locator('#out li .final').nth(i).inner_text()
                        for i in range(4)]
      seen['figures'] = page.inner_text('#figures')
      # Rewrite line 2 (a random rng seed each click) until it changes.
      for _ in range(6):
        page.locator('#out li button.rewrite').nth(1).click()
        page.wait_for_function("document.getElementById('busy')"
                               ".textContent === ''")
        now = [lines.nth(i).inner_text() for i in range(4)]
        if now[1] != seen['lines'][1]:
          break
      seen['rewritten'] = now
      page.screenshot(path=screenshot, full_page=True)
      page.fill('#seed', unknown)
      page.click('#go')
      page.wait_for_function(
          "document.getElementById('error').textContent !== ''")
      seen['error'] = page.inner_text('#error')
      seen['lines_after_error'] = page.locator('#out li').count()
    finally:
      browser.close()
  return seen


@pytest.mark.slow
def test_the_page_in_a_real_browser(tmp_path, compilation_cache):
  if not os.path.exists(CHROMIUM):
    if os.environ.get('CI'):
      pytest.fail(f'{CHROMIUM} is missing: .ci/run installs Debian chromium.')
    pytest.skip(f'{CHROMIUM} is not installed (apt-get install chromium).')
  corpus = tmp_path / 'lyrics.txt'
  corpus.write_text(synthetic_lyrics(num_lines=200, seed=1),
                    encoding='utf-8')
  workdir = tmp_path / 'run'
  subprocess.run(cli_command('train', f'--corpus={corpus}',
                             f'--workdir={workdir}', '--rnn_size=32',
                             '--embedding_size=16', '--batch_size=8',
                             '--seq_length=16', '--num_epochs=2',
                             cache=compilation_cache),
                 cwd=REPO, env=cli_env(), check=True, capture_output=True,
                 timeout=300)
  port = free_port()
  server = _start_server(workdir, corpus, compilation_cache, port,
                         tmp_path / 'serve.log')
  try:
    seen = drive_page(f'http://127.0.0.1:{port}/', '春', 'Q',
                      str(tmp_path / 'page.png'))
  finally:
    server.kill()
    server.wait(timeout=30)
  assert len(seen['lines']) == 4 and seen['lines'][0].startswith('春')
  # A line is marked when its end rhymes with the line before or after it.
  groups = [rhyme.group_of(line[-1]) for line in seen['lines']]
  expected = sum(g != rhyme.NONE and g in groups[max(i - 1, 0):i] +
                 groups[i + 1:i + 2] for i, g in enumerate(groups))
  assert seen['marked'] == expected, seen
  assert all(seen['finals']), seen
  assert 'self-repetition' in seen['figures'] and 'copy rate' in seen[
      'figures']
  new = seen['rewritten']
  assert new[1] != seen['lines'][1], seen
  assert [new[0], new[2], new[3]] == [seen['lines'][i] for i in (0, 2, 3)]
  assert 'never saw' in seen['error'] and "'Q'" in seen['error']
  assert seen['lines_after_error'] == 4  # The song stays on the page.
  assert os.path.getsize(tmp_path / 'page.png') > 10_000


if __name__ == '__main__':
  # Screenshot of a running server for the README:
  #   python tests/test_demo_page.py http://127.0.0.1:8000/ 从前 docs/demo_page.png
  print(drive_page(sys.argv[1], sys.argv[2], 'Q', sys.argv[3]))
