"""absl flags generated from the library's frozen config dataclasses.

One source of configuration: each field of a config dataclass (e.g.
`jaylyrics_jax.ModelConfig`) becomes one absl flag with the field's name (or
a rename), default, type and help text (`dataclasses.field(metadata={'help':
...})`; a str field with `metadata['choices']` becomes an enum flag). The
checks live once, in the dataclass's `__post_init__`: every generated flag
gets a validator that builds the dataclass, so a bad value fails at
flag-parse time (before any work starts) with the dataclass's own message,
its Python argument names rewritten to flag names (`cell='x'` ->
`--rnncell=x`).

Use it at import time of an entry point, then build the config in `main`:

    MODEL_FLAGS = config_flags.define_config_flags(
        jl.ModelConfig, renames={'cell': 'rnncell'}, skip=('vocab_size',))

    def main(argv):
      model_config = MODEL_FLAGS.build()   # a frozen jl.ModelConfig

Flag files keep working (`--flagfile=experiments/lstm.flags`): absl reads
them itself. A field whose flag is already defined (e.g. `--workdir`, which
`common.py` defines for every entry point) reuses that flag. Supported field
types: int, float, bool and str. Cross-field checks (none today) run when
`build` constructs the config: `common.run` reports its `JaylyricsError`
through `to_flag_names` too.

`to_flag_names` rewrites any library message this way; `rename_arguments`
adds renames for library arguments that are not config fields (e.g.
`unknown='skip'` -> `--unknown_chars=skip`).
"""

import dataclasses
import re
import sys
import typing
from typing import Any, Iterable, Mapping

from absl import flags

from jaylyrics_jax.errors import JaylyricsError

# Python argument name -> flag name, for every rename registered here.
_RENAMES: dict[str, str] = {}

# `name=` with an optional quoted or boolean value; not part of a longer
# identifier, attribute or flag (`x.name=`, `--name=`).
_ARGUMENT = re.compile(
    r"(?<![\w.\-=])([A-Za-z_]\w*)=('[^']*'|\"[^\"]*\"|True\b|False\b)?")


def rename_arguments(renames: Mapping[str, str]) -> None:
  """Registers Python argument -> flag renames for `to_flag_names`."""
  _RENAMES.update(renames)


def to_flag_names(message: str,
                  flag_values: flags.FlagValues = flags.FLAGS) -> str:
  """Rewrites the Python arguments a library message names as flags.

  Only names that are (renamed to) a defined flag change: `batch_size=0` ->
  `--batch_size=0`, `cell='gru'` -> `--rnncell=gru`, `resume=True` ->
  `--resume`, `learning_rate=` -> `--learning_rate=`.
  """
  def rewrite(match):
    name, value = match.group(1), match.group(2)
    flag = _RENAMES.get(name, name)
    if flag not in flag_values:
      return match.group(0)
    if value in ('True', 'False') and isinstance(flag_values[flag],
                                                 flags.BooleanFlag):
      return f'--{flag}' if value == 'True' else f'--no{flag}'
    if value and value[0] in '\'"':
      value = value[1:-1]
    return f'--{flag}={value or ""}'

  return _ARGUMENT.sub(rewrite, message)


def field_help(cls: type, name: str) -> str:
  """The help text of dataclass field `name` (its metadata['help'])."""
  return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get(
      'help', name)


@dataclasses.dataclass(frozen=True)
class ConfigFlags:
  """The flags of one config dataclass; `build()` makes the config."""
  cls: type
  flag_names: dict[str, str]  # Field -> flag.
  flag_values: flags.FlagValues

  def values(self) -> dict[str, Any]:
    """The fields' current flag values."""
    return {field: self.flag_values[flag].value
            for field, flag in self.flag_names.items()}

  def build(self, **overrides: Any) -> Any:
    """The config from the parsed flags; `overrides` set other fields.

    Raises the dataclass's `JaylyricsError` for a bad combination.
    """
    return self.cls(**dict(self.values(), **overrides))


def _define(flag_values, module_name, name, kind, default, help_text,
            choices):
  if choices:
    return flags.DEFINE_enum(name, default, list(choices), help_text,
                             flag_values=flag_values, module_name=module_name)
  define = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
            bool: flags.DEFINE_bool, str: flags.DEFINE_string}.get(kind)
  if define is None:
    raise TypeError(f'No flag type for {kind!r} (field --{name}).')
  return define(name, default, help_text, flag_values=flag_values,
                module_name=module_name)


def define_config_flags(cls: type, *, renames: Mapping[str, str] | None = None,
                        skip: Iterable[str] = (),
                        flag_values: flags.FlagValues = flags.FLAGS
                        ) -> ConfigFlags:
  """Defines one absl flag per field of the frozen dataclass `cls`.

  Args:
    cls: a dataclass whose every field has a default, and whose
      `__post_init__` raises `JaylyricsError` for a bad value.
    renames: field -> flag name where they differ (kept for old flag
      files), e.g. {'cell': 'rnncell'}; also used by `to_flag_names`.
    skip: fields without a flag (`build` takes them as overrides).
    flag_values: the registry (tests pass their own).
  Returns:
    A `ConfigFlags`; call its `build()` after parsing.
  """
  renames = dict(renames or {})
  rename_arguments(renames)
  # Listed under the calling entry point in --helpshort, as absl does for
  # its own DEFINEs (the main module is known by its file).
  module_name = sys._getframe(1).f_globals.get('__name__')  # pylint: disable=protected-access
  if module_name == '__main__':
    module_name = sys.argv[0]
  hints = typing.get_type_hints(cls)
  flag_names = {}
  for field in dataclasses.fields(cls):
    if field.name in skip:
      continue
    name = renames.get(field.name, field.name)
    flag_names[field.name] = name
    if name not in flag_values:
      _define(flag_values, module_name, name, hints[field.name],
              field.default,
              field.metadata.get('help', field.name),
              field.metadata.get('choices'))
  config_flags = ConfigFlags(cls, flag_names, flag_values)
  for field, name in flag_names.items():
    flags.register_validator(name, _validator(config_flags, field, name),
                             flag_values=flag_values)
  return config_flags


def _validator(config_flags: ConfigFlags, field: str, flag: str):
  """Checks one flag's value with the dataclass's own `__post_init__`."""
  # absl prefixes 'flag --name=value: '; the message's own is dropped.
  own_prefix = re.compile(rf'^--{re.escape(flag)}=[^:]*: ')

  def check(value):
    try:
      config_flags.cls(**{field: value})  # The value alone, other defaults.
    except JaylyricsError as alone:
      try:
        # Accepted with the other flags' values: a combination that is
        # valid although the value alone is not.
        config_flags.build(**{field: value})
      except JaylyricsError:
        message = to_flag_names(str(alone), config_flags.flag_values)
        raise flags.ValidationError(own_prefix.sub('', message)) from None
    return True

  return check
