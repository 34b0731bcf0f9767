r"""Draws the loss curve of a run into <workdir>/loss.png.

  python -m experiments.plot --workdir=runs/lstm
"""

from experiments import common
import jaylyrics_jax as jl


def main(argv):
  del argv
  print(jl.plot_losses(common.WORKDIR.value), flush=True)


if __name__ == '__main__':
  common.run(main)
