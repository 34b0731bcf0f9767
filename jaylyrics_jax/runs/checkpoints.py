"""Self-describing orbax checkpoints with a damage check and fallback.

Each checkpoint step holds two items: `state` (a pytree of arrays, saved with
`StandardSave`) and `meta` (JSON: vocabulary, configs, loop position and a
SHA-256 of every array in `state`). Settings found after training (the tuned
inference mixture) are added to a finished step as further JSON items with
`save_json_item`, so they travel and are deleted with the step they were
found for. orbax writes a step to a temporary directory and renames it when
complete, so a killed save is never listed; the
digest catches a step whose files were damaged afterwards, and `restore`
then falls back to the previous good step, saying so.
"""

import errno
import hashlib
import os
import shutil
import threading
from typing import Any, Callable, TYPE_CHECKING

from absl import logging
import jax
import numpy as np

from jaylyrics_jax.errors import explain_failure
from jaylyrics_jax.errors import JaylyricsError
from jaylyrics_jax.errors import os_error_code
from jaylyrics_jax.training import parallel

if TYPE_CHECKING:
  import orbax.checkpoint as ocp  # pylint: disable=g-bad-import-order


def _ocp():
  """orbax, imported on first use: it takes ~0.4 s, and a run needs it only
  at its first save (or to resume), not before its first step."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp


def __getattr__(name):  # `checkpoints.ocp` for callers and tests.
  if name == 'ocp':
    return _ocp()
  raise AttributeError(name)


FORMAT_VERSION = 1
# OS errors that say nothing about a checkpoint's files: reading them failed
# because of the machine (no permission, a full disk, too many files open).
_ENVIRONMENT_ERRORS = (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT,
                       errno.EMFILE, errno.ENFILE, errno.ENOMEM)
CHECKPOINT_DIR = 'checkpoints'
WHICH = ('best', 'latest')  # The checkpoints `restore` can pick.


def checkpoint_dir(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))


def tree_digest(tree: Any) -> str:
  """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = parallel.to_host(leaf)
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def open_manager(workdir: str, keep: int = 5,
                 for_writing: bool = True) -> 'ocp.CheckpointManager':
  """A manager keeping the `keep` newest steps and the best by valid loss.

  The preservation policy keeps the newest steps whatever their metric, so a
  run can always resume from where it stopped. A manager opened only for
  reading creates nothing and removes nothing (a killed save's temporary
  folder is left for the next writer, which removes it).
  """
  ocp = _ocp()
  policies = ocp.checkpoint_managers
  metric = lambda m: m['valid_loss']
  options = ocp.CheckpointManagerOptions(
      best_fn=metric, best_mode='min',
      preservation_policy=policies.AnyPreservationPolicy([
          policies.LatestN(n=keep),
          policies.BestN(get_metric_fn=metric, reverse=True, n=1)]),
      create=for_writing, cleanup_tmp_directories=for_writing)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def saved_steps(workdir: str) -> list[int]:
  """Steps with a complete checkpoint (a killed save's temp folder is not one)."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    return []
  manager = open_manager(workdir, for_writing=False)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def save(manager: 'ocp.CheckpointManager', step: int, state: Any,
         meta: dict[str, Any], valid_loss: float) -> None:
  """Saves one step and waits until it is durable on disk."""
  meta = dict(meta, format_version=FORMAT_VERSION,
              state_sha256=tree_digest(state))
  try:
    args = _ocp().args
    manager.save(step, args=args.Composite(
        state=args.StandardSave(state), meta=args.JsonSave(meta)),
                 metrics={'valid_loss': float(valid_loss)}, force=True)
    manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    # orbax reports a failed write from its writer threads with various
    # types; explain_failure finds the OS error or orbax's own inside.
    cause, fix = explain_failure(e)
    raise JaylyricsError(
        f'Could not write checkpoint {step} to {manager.directory}: {cause}. '
        f'{fix}, then resume the run (resume=True): the previous checkpoints '
        'are untouched.') from e


def close_manager(manager: 'ocp.CheckpointManager', failed: bool,
                  timeout: float = 10.0) -> None:
  """Waits for the manager's writes and closes it.

  After a failure (`failed`), orbax's writer threads may never finish (a
  write that raised can leave them waiting): the close then runs in a
  daemon thread for at most `timeout` seconds and its own errors are
  dropped, so the first error is the one reported and the caller is not
  kept waiting.
  """
  if not failed:
    manager.wait_until_finished()
    manager.close()
    return

  def close_quietly():
    try:
      manager.close()
    except Exception:  # pylint: disable=broad-except
      pass  # The error already being raised is the one that matters.

  closer = threading.Thread(target=close_quietly, daemon=True,
                            name='close-checkpoint-manager')
  closer.start()
  closer.join(timeout)


def save_json_item(workdir: str, step: int, name: str,
                   data: dict[str, Any]) -> None:
  """Adds (or replaces) the JSON item `name` of a finished checkpoint step.

  orbax writes it to a temporary folder inside the step and renames it when
  complete, so a killed write leaves the step as it was.
  """
  path = os.path.join(checkpoint_dir(workdir), str(step), name)
  if not os.path.isdir(os.path.dirname(path)):
    raise JaylyricsError(f'Checkpoint step {step} is not in '
                         f'{checkpoint_dir(workdir)!r}.')
  ocp = _ocp()
  try:
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
      checkpointer.save(path, args=ocp.args.JsonSave(data), force=True)
  except Exception as e:  # pylint: disable=broad-except
    cause, fix = explain_failure(e)
    raise JaylyricsError(
        f'Could not write {name!r} into checkpoint {step} of '
        f'{checkpoint_dir(workdir)!r}: {cause}. {fix}, then try again: the '
        'step itself is untouched.') from e


def read_json_item(manager: 'ocp.CheckpointManager', step: int,
                   name: str) -> dict[str, Any] | None:
  """The JSON item `name` of a step, or None when the step has none."""
  path = os.path.join(str(manager.directory), str(step), name)
  if not os.path.isdir(path):
    return None
  return manager.restore(
      step, args=_ocp().args.Composite(**{name: _ocp().args.JsonRestore()})
  )[name]


def read_meta(manager: 'ocp.CheckpointManager', step: int) -> dict[str, Any]:
  return manager.restore(
      step, args=_ocp().args.Composite(meta=_ocp().args.JsonRestore())).meta


def _candidates(manager: 'ocp.CheckpointManager', directory: str,
                steps: list[int], which: str, step: int | None) -> list[int]:
  """The steps to try, in order: `step` alone, or the best (which='best')
  and then the newest first."""
  if not steps:
    raise JaylyricsError(
        f'No complete checkpoint in {directory!r}. Train first, or pass '
        'the workdir= of a finished run.')
  if step is not None:
    if step not in steps:
      raise JaylyricsError(
          f'Checkpoint step {step} is not in {directory!r}; available: '
          f'{sorted(steps)}.')
    return [step]
  best = manager.best_step() if which == 'best' else None
  if best is None:
    return steps
  return [best] + [s for s in steps if s != best]


def _move_damaged(workdir: str, step: int, warn: Callable[[str], None]):
  """Moves damaged `step` into <workdir>/damaged_checkpoints/."""
  target = os.path.join(workdir, 'damaged_checkpoints', str(step))
  os.makedirs(os.path.dirname(target), exist_ok=True)
  shutil.move(os.path.join(checkpoint_dir(workdir), str(step)), target)
  warn(f'Moved damaged checkpoint {step} to {target}.')


def restore(workdir: str, abstract_state_fn: Callable[[dict[str, Any]], Any],
            which: str = 'latest', step: int | None = None,
            warn: Callable[[str], None] = logging.warning,
            move_damaged: bool = False,
            extra_items: tuple[str, ...] = ()
            ) -> tuple[Any, dict[str, Any], int]:
  """Restores the newest (or best) good checkpoint of `workdir`.

  Args:
    workdir: the run's folder.
    abstract_state_fn: builds the abstract state tree from the checkpoint's
      meta, so the arrays come back in their original containers.
    which: 'latest' or 'best' (lowest valid loss); ignored when `step` is
      set; anything else raises a `JaylyricsError`.
    step: restore exactly this step.
    warn: called with a message for every damaged checkpoint skipped.
    move_damaged: move damaged steps into `<workdir>/damaged_checkpoints/`
      (kept for inspection, out of the way of a resumed run that will save
      those step numbers again).
    extra_items: JSON items added by `save_json_item` to read too; each is
      put in the returned meta under its name (None where the step has none).
  Returns:
    (state, meta, step).
  """
  if which not in WHICH:
    raise JaylyricsError(
        f'which={which!r}: must be one of {", ".join(map(repr, WHICH))}.')
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise JaylyricsError(
        f'No checkpoint in {workdir!r} (no {CHECKPOINT_DIR}/ folder). Train '
        'first (`train`, or `save_model` after a loop of your own), or pass '
        'the workdir= of a finished run.')
  manager = open_manager(workdir, for_writing=False)
  try:
    steps = sorted(manager.all_steps(), reverse=True)
    candidates = _candidates(manager, directory, steps, which, step)
    damaged, vanished = [], []
    for s in candidates:
      try:
        meta = read_meta(manager, s)
        abstract = abstract_state_fn(meta)
        restored = manager.restore(s, args=_ocp().args.Composite(
            state=_ocp().args.StandardRestore(abstract)))
        state = restored.state
        if tree_digest(state) != meta.get('state_sha256'):
          raise ValueError('its arrays do not match the digest saved with it')
        for name in extra_items:
          meta[name] = read_json_item(manager, s, name)
        for bad in damaged if move_damaged else ():
          _move_damaged(workdir, bad, warn)
        return state, meta, s
      except JaylyricsError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        code = os_error_code(e)
        if not os.path.isdir(os.path.join(directory, str(s))):
          # Deleted while we read it: a run writing this workdir keeps only
          # its newest and best steps. Not damage; try the next one.
          warn(f'Checkpoint {s} in {directory} vanished while it was read '
               '(a run writing this workdir removed it); falling back to an '
               'earlier one.')
          vanished.append(s)
          continue
        if code in _ENVIRONMENT_ERRORS:
          cause, fix = explain_failure(e)
          raise JaylyricsError(
              f'Could not read checkpoint {s} in {directory}: {cause}. {fix}, '
              'then run again (the checkpoint itself may be intact).') from e
        # Any other failure to read a step means its files are damaged.
        damaged.append(s)
        warn(f'Checkpoint {s} in {directory} is damaged ({type(e).__name__}: '
             f'{str(e).splitlines()[0] if str(e) else ""}); falling back to '
             'an earlier one.')
    if vanished:
      raise JaylyricsError(
          f'The checkpoints of {directory!r} were removed while they were '
          f'read (vanished: {sorted(vanished)}; damaged: {sorted(damaged)}). '
          'A run writing this workdir replaces its old steps: run again.')
    raise JaylyricsError(
        f'Every checkpoint in {directory!r} is damaged ({sorted(steps)}). '
        'Retrain, or restore the folder from a backup.')
  finally:
    manager.close()
