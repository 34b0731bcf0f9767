"""Flags generated from the config dataclasses: one source of configuration."""

import dataclasses
import os

from absl import flags
import pytest

from conftest import REPO
from experiments import config_flags
import jaylyrics_jax as jl


@pytest.fixture
def registry():
  """A fresh flag registry with the train entry point's config flags."""
  flag_values = flags.FlagValues()
  model = config_flags.define_config_flags(
      jl.ModelConfig, renames={'cell': 'rnncell'}, skip=('vocab_size',),
      flag_values=flag_values)
  train = config_flags.define_config_flags(jl.TrainConfig,
                                           flag_values=flag_values)
  return flag_values, model, train


def test_one_flag_per_field_with_its_default_and_help(registry):
  flag_values, model, train = registry
  flag_values(['prog'])
  assert model.build(vocab_size=7) == jl.ModelConfig(vocab_size=7)
  assert train.build() == jl.TrainConfig()
  for cls, built in ((jl.ModelConfig, model), (jl.TrainConfig, train)):
    for field in dataclasses.fields(cls):
      if field.name == 'vocab_size':
        assert 'vocab_size' not in flag_values
        continue
      flag = flag_values[built.flag_names[field.name]]
      assert flag.default == field.default, field.name
      assert flag.help.endswith(field.metadata['help']), field.name
  assert flag_values['rnncell'].parser.enum_values == list(jl.config.CELLS)


@pytest.mark.parametrize('flagfile', ['lstm.flags', 'best.flags'])
def test_flag_files_build_the_configs(registry, flagfile):
  flag_values, model, train = registry
  flag_values(['prog', '--flagfile=' + os.path.join(REPO, 'experiments',
                                                    flagfile),
               '--batch_size=8'])
  model_config, train_config = model.build(), train.build()
  assert train_config.batch_size == 8  # Later flags override the file.
  with open(os.path.join(REPO, 'experiments', flagfile),
            encoding='utf-8') as f:
    lines = [line.strip() for line in f
             if line.startswith('--') and 'batch_size' not in line]
  values = dict(model_config.to_dict(), **train_config.to_dict(),
                rnncell=model_config.cell)
  for line in lines:
    name, _, value = line[2:].partition('=')
    expected = {'': True}.get(value, value)
    got = values[name]
    assert str(got) == str(expected) or got == type(got)(expected), line


@pytest.mark.parametrize('argv, message', [
    (['--rnn_size=0'], 'flag --rnn_size=0: must be a positive integer'),
    (['--dropout=1.0'], 'flag --dropout=1.0: must be in [0, 1)'),
    (['--learning_rate=-1'], 'must be > 0'),
    (['--decay_rate=2'], 'must be in (0, 1]'),
    (['--valid_fraction=1'], 'must be in [0, 1)'),
    (['--rnncell=transformer'], 'lstm|gru|rnn'),
    (['--workdir='], "name the run's folder"),
])
def test_bad_value_fails_at_parse_time_with_the_flag_name(registry, argv,
                                                          message):
  flag_values, _, _ = registry
  with pytest.raises(flags.IllegalFlagValueError) as raised:
    flag_values(['prog', *argv])
  assert message in str(raised.value)


def test_validation_also_guards_assignment(registry):
  flag_values, _, _ = registry
  flag_values(['prog'])
  with pytest.raises(flags.IllegalFlagValueError, match='--num_layers=0'):
    flag_values.num_layers = 0


def test_to_flag_names():
  flag_values = flags.FlagValues()
  flags.DEFINE_bool('resume', False, '', flag_values=flag_values)
  flags.DEFINE_string('rnncell', 'lstm', '', flag_values=flag_values)
  flags.DEFINE_string('unknown_chars', 'error', '', flag_values=flag_values)
  flags.DEFINE_integer('batch_size', 1, '', flag_values=flag_values)
  config_flags.rename_arguments({'cell': 'rnncell',
                                 'unknown': 'unknown_chars'})
  rewrite = lambda m: config_flags.to_flag_names(m, flag_values)
  assert rewrite("cell='gru': must be") == '--rnncell=gru: must be'
  assert rewrite("pass unknown='skip' to") == 'pass --unknown_chars=skip to'
  assert rewrite('Pass resume=True to') == 'Pass --resume to'
  assert rewrite('a smaller batch_size=32.') == 'a smaller --batch_size=32.'
  # Not flags, or not arguments: unchanged.
  assert rewrite('replace(c, vocab_size=v.size)') == (
      'replace(c, vocab_size=v.size)')
  assert rewrite('x.batch_size=3 and --batch_size=3') == (
      'x.batch_size=3 and --batch_size=3')
