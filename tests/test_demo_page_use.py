"""The demo page as a user meets it, in Debian's Chromium (Playwright), and
the server's stop: `python -m experiments.serve` on a free localhost port
with a tiny trained run. Every wait is bounded."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BROWSER_ARGS
from conftest import CHROMIUM
from conftest import cli_command
from conftest import cli_env
from conftest import free_port
from conftest import REPO
from conftest import synthetic_lyrics

@pytest.fixture(scope='module')
def trained(tmp_path_factory, compilation_cache):
  tmp = tmp_path_factory.mktemp('demo_use')
  corpus = tmp / 'lyrics.txt'
  corpus.write_text(synthetic_lyrics(num_lines=200, seed=1),
                    encoding='utf-8')
  workdir = tmp / 'run'
  subprocess.run(cli_command('train', f'--corpus={corpus}',
                             f'--workdir={workdir}', '--rnn_size=32',
                             '--embedding_size=16', '--batch_size=8',
                             '--seq_length=16', '--num_epochs=2',
                             cache=compilation_cache),
                 cwd=REPO, env=cli_env(), check=True, capture_output=True,
                 timeout=300)
  return tmp, corpus, workdir, compilation_cache


def _serve(trained, *flags, deadline=240):
  """(process, port) once the server says it is ready."""
  tmp, corpus, workdir, cache = trained
  port = free_port()
  log = tmp / f'serve_{port}.log'
  out = open(log, 'w', encoding='utf-8')  # pylint: disable=consider-using-with
  proc = subprocess.Popen(
      cli_command('serve', f'--workdir={workdir}', f'--corpus={corpus}',
                  f'--port={port}', *flags, cache=cache),
      cwd=REPO, env=cli_env(), stdout=out, stderr=subprocess.STDOUT)
  start = time.monotonic()
  while time.monotonic() - start < deadline and proc.poll() is None:
    if 'Ready in' in log.read_text(encoding='utf-8'):
      return proc, port
    time.sleep(0.5)
  proc.kill()
  raise AssertionError('the server did not start:\n' +
                       log.read_text(encoding='utf-8'))


def _stop(proc):
  if proc.poll() is None:
    proc.kill()
  proc.wait(timeout=30)


def _need_chromium():
  if not os.path.exists(CHROMIUM):
    if os.environ.get('CI'):
      pytest.fail(f'{CHROMIUM} is missing: .ci/run installs Debian chromium.')
    pytest.skip(f'{CHROMIUM} is not installed (apt-get install chromium).')


WRITTEN = "document.querySelectorAll('#out li').length === 4"
IDLE = ("!document.getElementById('go').disabled && "
        "document.getElementById('busy').textContent === ''")


def _use_the_page(url: str) -> dict:
  """What a user does on a phone-sized page; returns what they saw."""
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  seen = {}
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                args=BROWSER_ARGS)
    try:
      context = browser.new_context(viewport={'width': 390, 'height': 844})
      context.grant_permissions(['clipboard-read', 'clipboard-write'],
                                origin=url.rstrip('/'))
      page = context.new_page()
      page.set_default_timeout(60_000)
      writes = []
      page.on('request', lambda r: writes.append(r.url)
              if r.method == 'POST' else None)
      page.goto(url)
      width = ('[document.documentElement.scrollWidth, '
               'document.documentElement.clientWidth]')
      seen['width_empty'] = page.evaluate(width)
      seen['help'] = page.evaluate(
          "[...document.querySelectorAll('#form input')].map((i) => "
          "i.parentElement.querySelector('small')?.textContent.trim() || '')")
      page.fill('#seed', '春')
      page.fill('#lines', '4')
      # Right after the click, in the same task: busy, and nothing sent twice.
      seen['busy'] = page.evaluate(
          "() => { const go = document.getElementById('go'); go.click(); "
          "go.click(); return [go.disabled, "
          "document.getElementById('busy').textContent, "
          "document.getElementById('progress').hidden]; }")
      page.wait_for_function(WRITTEN)
      page.wait_for_function(IDLE)
      page.dblclick('#go')  # A double click: one more request, not two.
      page.wait_for_function(IDLE)
      seen['writes'] = [u for u in writes if u.endswith('/api/write')]
      seen['width_song'] = page.evaluate(width)
      lines = page.locator('#out li .text')
      seen['lines'] = [lines.nth(i).inner_text() for i in range(4)]
      page.locator('#out li button.rewrite').nth(1).click()
      page.wait_for_function(IDLE)
      seen['rewritten'] = [lines.nth(i).inner_text() for i in range(4)]
      seen['changed'] = page.evaluate(
          "[...document.querySelectorAll('#out li')].map((li) => "
          "li.classList.contains('changed'))")
      seen['badge'] = page.inner_text('#out li.changed .badge')
      page.click('#copy')
      page.wait_for_function(
          "document.getElementById('copied').textContent !== ''")
      seen['clipboard'] = page.evaluate('navigator.clipboard.readText()')
      page.fill('#temperature', '1e-40')
      page.click('#go')
      page.wait_for_function(
          "document.getElementById('error').textContent !== ''")
      seen['error'] = page.inner_text('#error')
      seen['invalid'] = page.get_attribute('#temperature', 'aria-invalid')
      seen['lines_after_error'] = page.locator('#out li').count()
    finally:
      browser.close()
  return seen


@pytest.mark.slow
def test_the_page_on_a_phone(trained):
  _need_chromium()
  proc, port = _serve(trained)
  try:
    seen = _use_the_page(f'http://127.0.0.1:{port}/')
  finally:
    _stop(proc)
  scroll, client = seen['width_empty']
  assert scroll <= client, seen  # No sideways scrolling at 390 px...
  scroll, client = seen['width_song']
  assert scroll <= client, seen  # ...with a verse on the page either.
  assert len(seen['help']) == 6 and all(seen['help']), seen['help']
  disabled, busy_text, progress_hidden = seen['busy']
  assert disabled and busy_text and not progress_hidden, seen['busy']
  assert len(seen['writes']) == 2, seen['writes']  # Two clicks, two doubles.
  old, new = seen['lines'], seen['rewritten']
  assert new[1] != old[1] and [new[i] for i in (0, 2, 3)] == [
      old[i] for i in (0, 2, 3)], seen
  assert seen['changed'] == [False, True, False, False]
  assert seen['badge'] == 'new'
  assert seen['clipboard'] == '\n'.join(new)
  assert 'temperature' in seen['error'] and seen['invalid'] == 'true'
  assert seen['lines_after_error'] == 4


def _post(port, body, timeout):
  req = urllib.request.Request(
      f'http://127.0.0.1:{port}/api/write', data=json.dumps(body).encode(),
      headers={'Content-Type': 'application/json'})
  try:
    with urllib.request.urlopen(req, timeout=timeout) as res:
      return res.status
  except urllib.error.HTTPError as e:
    return e.code
  except (urllib.error.URLError, ConnectionError, TimeoutError):
    return None  # The server went away mid-answer.


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_server_stops_within_2_s_mid_request(trained, signum):
  proc, port = _serve(trained, '--work_budget=10000000')
  try:
    answers = []
    # The biggest request the page allows: 64 lines, 64 candidates.
    body = {'seed': '春', 'lines': 64, 'best_of': 64, 'ticket': 'big',
            'rng_seed': 7}
    client = threading.Thread(
        target=lambda: answers.append(_post(port, body, 60)))
    client.start()
    status = {}
    deadline = time.monotonic() + 60
    while status.get('state') != 'running' and time.monotonic() < deadline:
      with urllib.request.urlopen(
          f'http://127.0.0.1:{port}/api/queue?ticket=big', timeout=10) as res:
        status = json.loads(res.read())
      time.sleep(0.05)
    assert status.get('state') == 'running', status
    start = time.monotonic()
    proc.send_signal(signum)
    code = proc.wait(timeout=30)
    took = time.monotonic() - start
    client.join(30)
  finally:
    _stop(proc)
  assert took < 2.0, took
  assert code == 128 + signum
  assert answers in ([503], [None]), answers  # Cancelled, never a 200/500.
