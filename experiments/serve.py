r"""A local web page to write lyrics with a trained run.

  pip install -e '.[demo]'
  python -m experiments.serve --workdir=runs/best [--host=127.0.0.1]
      [--port=8000] [--allowed_hosts=NAME,...] [--work_budget=8192]

Loads the run once and compiles the programs the page's defaults use (an
8-line verse and rewriting any of its lines) before it answers, then serves
the page on http://HOST:PORT/ and its JSON API (`experiments/web_app.py`).
The decoding flags of `experiments.sample` set the page's fixed settings
(line bounds, no-repeat, max-copy, mixture); the page sets seed, lines,
rhyme, temperature, best-of and the rng seed.

Binds 127.0.0.1 unless told, and answers only requests addressed to
127.0.0.1, localhost, ::1, --host and --allowed_hosts (a warning says so when
it binds to anything but this machine). Requests run one at a time, up to 16
waiting; Ctrl-C or SIGTERM cancels them and ends the process at once.
"""

import os
import signal
import socket
import sys
import time

from absl import flags

from experiments import common
from experiments import sampling_flags as sf
from experiments import web_app
from experiments import web_guard
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.generation.songwriter import Songwriter

HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on '
                           '(0.0.0.0 exposes the page to the network).')
PORT = flags.DEFINE_integer('port', 8000, 'Port to listen on.', lower_bound=0,
                            upper_bound=65535)
ALLOWED_HOSTS = flags.DEFINE_list(
    'allowed_hosts', [], 'Host names the page may be opened by besides '
    '127.0.0.1, localhost, ::1 and --host (e.g. this machine\'s name on '
    'the network, with --host=0.0.0.0).')
WORK_BUDGET = flags.DEFINE_integer(
    'work_budget', web_app.WORK_BUDGET, 'Most characters x candidates one '
    'request may draw (an 8-line verse draws about 128 per candidate); '
    'bigger requests are refused, so none holds the others up long.',
    lower_bound=1)


def _warm_up(writer: Songwriter, vocab) -> list:
  """Writes an 8-line verse and rewrites one line of each size; returns
  the shapes compiled (`web_app.shape_of`)."""
  warm = (sf.SEED.value if not vocab.unknown_chars(sf.SEED.value)
          else next(ch for ch in vocab.chars if ch != ' '))
  lines = web_app.DEFAULTS['lines']
  song = writer.write(warm, lines)
  shapes = [web_app.shape_of(writer.plan_write(warm, lines), 'auto')]
  texts = [line.text for line in song.lines]
  for index in range(len(texts)):
    shape = web_app.shape_of(writer.plan_rewrite(texts, index, warm), 'auto')
    if shape not in shapes:
      try:
        writer.rewrite_line(texts, index, warm)
      except JaylyricsError:
        pass  # No different line: compiled all the same.
      shapes.append(shape)
  return shapes


def _bind() -> socket.socket:
  """The server's socket, bound now: a port in use fails before the run
  loads (it listens once the page is ready)."""
  family = socket.AF_INET6 if ':' in HOST.value else socket.AF_INET
  sock = socket.socket(family)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind((HOST.value, PORT.value))
  except OSError as e:
    sock.close()
    common.fail(f'Cannot listen on {HOST.value}:{PORT.value} ({e.strerror}): '
                'pass another --port (or --host).')
  return sock


def _server(app, queue):
  import uvicorn  # pylint: disable=g-import-not-at-top

  class Server(uvicorn.Server):
    """Cancels every request on Ctrl-C / SIGTERM: nothing waits for one."""

    def handle_exit(self, sig, frame):
      queue.stop()
      super().handle_exit(sig, frame)

  return Server(uvicorn.Config(app, host=HOST.value, port=PORT.value,
                               log_level='warning',
                               timeout_graceful_shutdown=1))


def main(argv):
  del argv
  start = time.perf_counter()
  hosts = [HOST.value, *ALLOWED_HOSTS.value]
  if not web_guard.is_loopback(HOST.value):
    if HOST.value in web_guard.WILDCARDS:
      hosts.append(socket.gethostname())
    common.warn(
        f'--host={HOST.value} opens the page to other machines on the '
        'network, with nothing to check who they are. It answers to '
        f'{", ".join(sorted(set(web_guard.LOOPBACK + tuple(hosts))))}; add '
        'names with --allowed_hosts. Use --host=127.0.0.1 to keep it on '
        'this machine.')
  sock = _bind()
  run = sf.load_run()
  writer = Songwriter(run.model, run.mixture, run.train_text,
                      sf.sampling_config(), warn=common.warn,
                      writer=sf.line_config())
  print('Compiling the page\'s programs…', flush=True)
  compiled = _warm_up(writer, run.model.vocab)
  app = web_app.make_app(writer, common.WORKDIR.value, tuple(hosts),
                         WORK_BUDGET.value, compiled=tuple(compiled))
  server = _server(app, app.state.queue)
  sock.listen(128)  # Requests from now on wait for the loop, none refused.
  print(f'Ready in {time.perf_counter() - start:.1f} s: '
        f'http://{HOST.value}:{PORT.value}/', flush=True)
  stopped_by = []

  def stop(signum, frame):  # Called again by uvicorn once it has shut down.
    del frame
    stopped_by.append(signum)
    raise KeyboardInterrupt

  signal.signal(signal.SIGTERM, stop)
  signal.signal(signal.SIGINT, stop)
  try:
    server.run(sockets=[sock])
  except KeyboardInterrupt:
    pass
  code = 128 + stopped_by[0] if stopped_by else 0
  print('Stopped.', flush=True)
  sys.stderr.flush()
  # A request may still be on the device: end without waiting for it.
  os._exit(code)  # pylint: disable=protected-access


if __name__ == '__main__':
  common.run(main)
