"""Flags of the entry points that use a run's tuned inference (evaluate, sample)."""

from absl import flags

CACHE_SIZE = flags.DEFINE_integer(
    'cache_size', -1, 'Neural-cache window (-1: as tuned after training and '
    'stored in the checkpoint, 0: off).', lower_bound=-1)
NGRAM_ORDER = flags.DEFINE_integer(
    'ngram_order', -1, 'Kneser-Ney n-gram order mixed in (-1: as tuned, '
    '0: off).', lower_bound=-1, upper_bound=8)
CORPUS = flags.DEFINE_string(
    'corpus', None, 'The run\'s training corpus, for the n-gram components '
    '(default: the path recorded in the checkpoint).')
CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                               'Which checkpoint of the run to use.')
