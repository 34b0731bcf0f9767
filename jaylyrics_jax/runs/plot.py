"""The loss curve: train and valid loss per epoch, as a PNG."""

import os

from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.files import atomic_write
from jaylyrics_jax.runs.logs import LOG_FILE
from jaylyrics_jax.runs.logs import read_jsonl

PLOT_FILE = 'loss.png'


def plot_losses(workdir: str, out_path: str | None = None) -> str:
  """Draws `<workdir>/log.jsonl` into `<workdir>/loss.png`; returns the path."""
  records = read_jsonl(os.path.join(workdir, LOG_FILE))
  if not records:
    raise JaylyricsError(
        f'No training log in {workdir!r} ({LOG_FILE} is missing or empty). '
        'Train first, or pass the workdir= of a run.')
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')  # No display needed.
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  epochs = [r['epoch'] for r in records]
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.plot(epochs, [r['train_loss'] for r in records], 'o-', label='train')
  valid = [(r['epoch'], r['valid_loss']) for r in records
           if r.get('valid_loss') is not None]
  if valid:
    ax.plot(*zip(*valid), 's-', label='valid')
  ax.set_xlabel('epoch')
  ax.set_ylabel('cross-entropy (nats / char)')
  ax.set_title(f'{os.path.basename(os.path.abspath(workdir))}: loss per epoch')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  out_path = out_path or os.path.join(workdir, PLOT_FILE)
  atomic_write(out_path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))
  plt.close(fig)
  return out_path
