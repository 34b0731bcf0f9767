r"""A local web page to write lyrics with a trained run.

  pip install -e '.[demo]'
  python -m experiments.serve --workdir=runs/best [--host=127.0.0.1]
      [--port=8000]

Loads the run once, compiles the default sampler once (a first song is
written before the server answers), then serves the page on
http://HOST:PORT/ and its JSON API (`experiments/web_app.py`). The decoding
flags of `experiments.sample` set the page's fixed settings (line bounds,
no-repeat, max-copy, mixture); the page sets seed, lines, rhyme,
temperature, best-of and the rng seed. Binds 127.0.0.1 unless told.
"""

import time

from absl import flags

from experiments import common
from experiments import sampling_flags as sf
from experiments import web_app
from jaylyrics_jax.generation.songwriter import Songwriter

HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on '
                           '(0.0.0.0 exposes the page to the network).')
PORT = flags.DEFINE_integer('port', 8000, 'Port to listen on.', lower_bound=0,
                            upper_bound=65535)


def main(argv):
  del argv
  import uvicorn  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  run = sf.load_run()
  writer = Songwriter(run.model, run.mixture, run.train_text,
                      sf.sampling_config(), warn=common.warn,
                      writer=sf.line_config())
  # Compile the page's default request now, from --seed (or the most
  # frequent character, when the run's vocabulary lacks it).
  vocab = run.model.vocab
  warm = (sf.SEED.value if not vocab.unknown_chars(sf.SEED.value)
          else next(ch for ch in vocab.chars if ch != ' '))
  writer.write(warm, web_app.DEFAULTS['lines'])
  app = web_app.make_app(writer, common.WORKDIR.value)
  print(f'Ready in {time.perf_counter() - start:.1f} s: '
        f'http://{HOST.value}:{PORT.value}/', flush=True)
  uvicorn.run(app, host=HOST.value, port=PORT.value, log_level='warning')


if __name__ == '__main__':
  common.run(main)
