"""Data parallelism over a device mesh, on one host or across hosts.

The batch's parallel streams (and their carried hidden states) are sharded
over a 1-D mesh axis 'data'; parameters and optimizer state are replicated.
The same jitted train step serves one device and many: jit follows the
shardings of its inputs and inserts the gradient all-reduce.

Across hosts, `initialize_distributed` must run before any other JAX call;
each process then feeds only its own rows of every batch
(`jax.make_array_from_process_local_data`).
"""

from typing import Any

import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from jaylyrics_jax.errors import JaylyricsError

AXIS = 'data'


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Starts JAX's distributed runtime; call before any other JAX call.

  With no arguments, `jax.distributed.initialize` auto-detects SLURM, TPU
  and cloud clusters. On CPU the cross-process collectives use gloo.
  """
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)


def is_primary() -> bool:
  """True in the one process that writes logs, plots and samples."""
  return jax.process_index() == 0


def data_mesh(num_devices: int, batch_size: int) -> Mesh | None:
  """A ('data',) mesh over the first `num_devices` devices, or None for one.

  `num_devices=0` means every device (of every process). Axis types are
  Auto: `jax.make_mesh`'s default Explicit breaks the embedding gather.
  """
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise JaylyricsError(
        f'num_devices={n} but only {len(devices)} devices are visible '
        f'({jax.default_backend()}). Pass num_devices= of at most '
        f'{len(devices)}.')
  if batch_size % n:
    raise JaylyricsError(
        f'batch_size={batch_size} does not divide over {n} devices. Use a '
        f'multiple of {n} or another num_devices=.')
  if n == 1 and jax.process_count() == 1:
    return None
  if jax.process_count() > 1 and n != len(devices):
    raise JaylyricsError(
        f'With {jax.process_count()} processes the mesh uses all '
        f'{len(devices)} devices; pass num_devices=0 or {len(devices)}.')
  return Mesh(np.array(devices[:n]), (AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def local_rows(rows: np.ndarray, mesh: Mesh) -> np.ndarray:
  """This process's share of a global array's leading (stream) axis."""
  per_process = rows.shape[0] // jax.process_count()
  start = jax.process_index() * per_process
  return rows[start:start + per_process]


def put(tree: Any, sharding: NamedSharding) -> Any:
  """Places host values (the same in every process) with `sharding`."""
  def one(x):
    x = np.asarray(x)
    if sharding.spec == P():
      local = x
    else:
      local = local_rows(x, sharding.mesh)
    return jax.make_array_from_process_local_data(sharding, local, x.shape)
  return jax.tree.map(one, tree)


def to_host(x: jax.Array) -> np.ndarray:
  """The whole value of a (possibly multi-process) array on this host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


class Placement:
  """Where the train loop's values live: one device, or a data mesh.

  With `mesh=None` every method returns its argument unchanged, so the
  single-device loop pays nothing.
  """

  def __init__(self, mesh: Mesh | None):
    self.mesh = mesh

  def _put(self, tree, sharding):
    return tree if self.mesh is None else put(tree, sharding(self.mesh))

  def batch(self, rows: np.ndarray) -> Any:
    """A <int32>[B, T] batch (the same in every process), split by stream."""
    return self._put(rows, sharded)

  def carry(self, carries: Any) -> Any:
    return self._put(carries, sharded)

  def replicate(self, tree: Any) -> Any:
    return self._put(tree, replicated)

  def key(self, key: jax.Array) -> jax.Array:
    if self.mesh is None:
      return key
    return jax.random.wrap_key_data(
        self.replicate(jax.random.key_data(key)))

  def state(self, state: Any) -> Any:
    """A TrainState: carry sharded by stream, everything else replicated."""
    if self.mesh is None:
      return state
    carry = self.carry(state.carry)
    return self.replicate(state.replace(carry=None)).replace(carry=carry)

  def abstract(self, tree: Any) -> Any:
    """Adds the shardings `state` would give to an abstract checkpoint tree."""
    if self.mesh is None:
      return tree

    def attach(path, leaf):
      in_carry = any(getattr(k, 'name', None) == 'carry' for k in path)
      sharding = (sharded if in_carry else replicated)(self.mesh)
      return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    return jax.tree_util.tree_map_with_path(attach, tree)
