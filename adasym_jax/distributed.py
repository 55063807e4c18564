"""Past one machine: the seed axis sharded over the processes of a ``jax.distributed`` run.

Many seeds train as one vmapped program whose every :class:`~adasym_jax.state.TrainState`
leaf has a leading seed axis ``(S, ...)``. Here that axis is split over *all* devices of *all*
processes (a 1-axis ``"seed"`` mesh, :func:`~adasym_jax.runner.seed_sharding`): each process
holds and trains only its own seeds, with the same compiled chunk
(:meth:`~adasym_jax.runner.Trainer.chunk`) as a single-process run; the data are replicated.

Every process runs the same program (multi-controller JAX): call :func:`initialize` first, then
the same :func:`train_sharded` / :func:`save_sharded` / :func:`load_sharded` calls with the same
arguments on every process. With one process (no :func:`initialize`) the same calls train on
the local devices, so a script runs unchanged on a laptop and on many hosts.

:func:`train_sharded` is a lower-level loop than :func:`~adasym_jax.runner.fit`: a fixed number
of steps in compiled chunks, with no evaluation, validation or early stopping; a non-finite
metric or state raises :class:`~adasym_jax.runner.NonFiniteError`. Its per-seed metrics are
gathered to every process, so any process may write them.

Checkpoints of a sharded state are `Orbax <https://orbax.readthedocs.io>`_ folders (each
process writes its own seeds; no gathering): one written by any number of processes restores
under any other number whose devices divide the seeds, with the same values. The msgpack
checkpoints of :mod:`adasym_jax.checkpoint` remain those of single-process runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from adasym_jax._version import __version__
from adasym_jax.checkpoint import CheckpointError, Standardization, checkpoint_template, extra_with_standardization
from adasym_jax.config import TrainConfig
from adasym_jax.jit import tuned_jit
from adasym_jax.runner import Seeds, Trainer, raise_first_nonfinite, seed_list, seed_sharding, seeds_nonfinite, shard_seeds
from adasym_jax.state import TrainState, num_stacked_seeds
from adasym_jax.validation import check_context, check_points

__all__ = [
    "FORMAT",
    "ShardedRun",
    "gather",
    "initialize",
    "load_sharded",
    "place_seeds",
    "save_sharded",
    "train_sharded",
]

#: The ``format`` entry of a sharded checkpoint's metadata.
FORMAT = "adasym_jax.distributed/1"
_STATE_ITEM, _META_ITEM = "state", "meta"


def initialize(coordinator: str, num_processes: int, process_id: int, *, timeout_s: int = 300) -> None:
    """Join a run of ``num_processes`` processes; call it first, before any JAX computation.

    A thin wrapper of ``jax.distributed.initialize`` that also selects Gloo for CPU
    collectives (``jax_cpu_collectives_implementation``; JAX's default since 0.5, set here so
    that a CPU run never depends on it). Afterwards ``jax.devices()`` lists the devices of
    every process and ``jax.local_devices()`` this process's own.

    Args:
      coordinator: ``"host:port"`` of process 0, where it serves the coordination service
        (the same string on every process; any free port).
      num_processes: how many processes take part (>= 1).
      process_id: this process's index in ``0 .. num_processes - 1``.
      timeout_s: seconds to wait for all processes to join before raising.
    """
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"coordinator must be 'host:port', got {coordinator!r}")
    if isinstance(num_processes, bool) or not isinstance(num_processes, (int, np.integer)) or num_processes < 1:
        raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, (int, np.integer)) or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be an integer in [0, {num_processes}), got {process_id!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=int(num_processes),
        process_id=int(process_id),
        initialization_timeout=int(timeout_s),
    )


def _num_seeds(state: TrainState) -> int:
    n = num_stacked_seeds(state)
    if n is None:
        raise ValueError(f"state.step has shape {np.shape(state.step)}; expected a stacked state with a leading seed axis (S,)")
    return n


def place_seeds(state: TrainState, devices: Optional[Sequence[Any]] = None) -> TrainState:
    """``state`` (leaves ``(S, ...)``) as global arrays split along the seed axis over
    ``devices`` (default: every device of every process).

    The input is either the full state, identical on every process (e.g. ``Trainer.init`` of
    the same seeds; each process keeps its own slice), or a state already placed (returned as
    is when its sharding is this one, else resharded). ``S`` must be a multiple of the number
    of devices (a one-line ``ValueError``).
    """
    _num_seeds(state)  # a stacked state, else a one-line ValueError
    return shard_seeds(state, devices)


def gather(tree: Any) -> Any:
    """Every leaf of ``tree`` (global arrays split over processes, e.g. a placed
    :class:`TrainState` with leaves ``(S, ...)``) as a full NumPy array on every process.

    A collective: every process must call it. With one process it is ``jax.device_get``.
    """
    return multihost_utils.process_allgather(tree, tiled=True)


@dataclasses.dataclass
class ShardedRun:
    """What :func:`train_sharded` returns.

    ``state``: the final :class:`TrainState`, global arrays split over the seed axis
    (:func:`gather` it for NumPy, :func:`save_sharded` it to resume); ``seeds``: the seeds in
    axis order; ``metrics``: per-step training metrics, NumPy ``(S, num_steps)`` on every
    process; ``step``: the run's step count after the last chunk.
    """

    state: TrainState
    seeds: list[int]
    metrics: dict[str, np.ndarray]
    step: int


@tuned_jit
def _nonfinite_marks(state: TrainState) -> TrainState:
    """``state``'s structure with each leaf replaced by a float ``(S,)``: NaN for a seed whose
    leaf holds a NaN/inf, else 0 (integer leaves: 0). Gathered, it stands in for the state in
    :func:`~adasym_jax.runner.seeds_nonfinite`, which names the leaf, without moving the
    state off its devices."""

    def mark(leaf):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.zeros(leaf.shape[:1], jnp.float32)
        finite = jnp.all(jnp.isfinite(jnp.reshape(leaf, (leaf.shape[0], -1))), axis=1)
        return jnp.where(finite, 0.0, jnp.nan).astype(jnp.float32)

    return jax.tree.map(mark, state)


def train_sharded(
    config: TrainConfig,
    data: Any,
    seeds: Seeds,
    num_steps: int,
    *,
    chunk_steps: Optional[int] = None,
    state: Optional[TrainState] = None,
    context: Any = None,
    trainer: Optional[Trainer] = None,
    devices: Optional[Sequence[Any]] = None,
) -> ShardedRun:
    """Train ``seeds`` for ``num_steps`` steps on ``data (n, dim)`` with the seed axis split
    over ``devices`` (default: every device of every process); call it on every process with
    the same arguments.

    Runs :meth:`Trainer.chunk <adasym_jax.runner.Trainer.chunk>` programs of ``chunk_steps``
    steps (default: all ``num_steps`` in one; a shorter last chunk if needed), the program a
    single-process :func:`~adasym_jax.runner.fit` runs, partitioned by XLA over the seed mesh;
    each device trains its ``S / num_devices`` seeds on the replicated data. ``state`` resumes
    (a placed state, e.g. from :func:`load_sharded`, or the full state on every process);
    ``None`` starts from ``Trainer.init(seeds)``. ``context (n, context_dim)`` goes with
    ``data`` row by row for a conditional ``config``. ``trainer`` may carry a custom step.

    No evaluation, validation, early stopping or standardization (transform the data
    first): this is the loop under ``fit``, not ``fit``. After each chunk the metrics are
    gathered to every process; a NaN/inf metric or state raises
    :class:`~adasym_jax.runner.NonFiniteError` carrying the placed state from before the chunk.

    Bad input (data, a seed count that does not divide over the devices, a state of other
    seeds) is a one-line ``ValueError`` before anything compiles.
    """
    check_points(data, None, "data", min_rows=1)
    for name, value in (("num_steps", num_steps), ("chunk_steps", chunk_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    n, dim = int(np.shape(data)[0]), int(np.shape(data)[1])
    check_context(context, config.context_dim, n)
    seeds_ = seed_list(seeds)
    sharding = seed_sharding(len(seeds_), devices)
    if trainer is None:
        trainer = Trainer(config, dim)
    elif trainer.config != config or trainer.dim != dim:
        raise ValueError(f"trainer is for dim {trainer.dim} and another config; pass the config and data it was built for")
    if state is not None and _num_seeds(state) != len(seeds_):
        raise ValueError(f"state holds {_num_seeds(state)} stacked seeds but {len(seeds_)} seeds were given")

    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    x = jax.device_put(np.asarray(data, np.float32), replicated)
    ctx = None if context is None else jax.device_put(np.asarray(context, np.float32), replicated)
    state = place_seeds(trainer.init(seeds_) if state is None else state, devices)
    step = int(gather(state.step)[0])

    length = num_steps if chunk_steps is None else min(chunk_steps, num_steps)
    chunks = [length] * (num_steps // length) + ([num_steps % length] if num_steps % length else [])
    history: dict[str, list[np.ndarray]] = {}
    for length in chunks:
        new_state, metrics = trainer.chunk(length, n)(state, x, ctx)
        metrics = {k: np.asarray(v) for k, v in gather(metrics).items()}
        marks = gather(_nonfinite_marks(new_state))
        raise_first_nonfinite(*seeds_nonfinite(metrics, marks, step), metrics, marks, state, step, length)
        for k, v in metrics.items():
            history.setdefault(k, []).append(v)
        state, step = new_state, step + length
    return ShardedRun(state, seeds_, {k: np.concatenate(v, axis=1) for k, v in history.items()}, step)


def save_sharded(
    directory: Any,
    state: TrainState,
    config: TrainConfig,
    dim: int,
    seeds: Sequence[int],
    *,
    extra: Optional[Mapping[str, Any]] = None,
    standardization: Optional[Standardization] = None,
    overwrite: bool = False,
) -> Path:
    """Write a placed (or single-process) ``state`` with leaves ``(len(seeds), ...)`` to the
    Orbax folder ``directory``; call it on every process with the same arguments.

    Each process writes its own seeds' slices; the folder also holds JSON metadata (``config``,
    ``dim``, ``seeds``, ``step``, ``extra``, ``standardization`` as in
    :func:`~adasym_jax.checkpoint.save_checkpoint`). Orbax writes into a temporary folder and
    renames it when every process is done, so a crash never leaves a half-written
    ``directory``. An existing ``directory`` is a ``ValueError`` unless ``overwrite`` (which
    deletes it first). Returns the folder (absolute).
    """
    d = Path(directory).absolute()
    if d.exists() and not overwrite:
        raise ValueError(f"{d} exists; pass overwrite=True to replace it")
    seeds = [int(s) for s in seeds]
    if _num_seeds(state) != len(seeds):
        raise ValueError(f"state holds {_num_seeds(state)} stacked seeds but {len(seeds)} seeds were given")
    extra = extra_with_standardization(extra, standardization, dim)
    meta = {
        "format": FORMAT,
        "config": config.to_dict(),
        "dim": int(dim),
        "seeds": seeds,
        "step": int(gather(state.step)[0]),
        "package_version": __version__,
        "extra": extra,
    }
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        checkpointer.save(
            d,
            args=ocp.args.Composite(**{_STATE_ITEM: ocp.args.StandardSave(state), _META_ITEM: ocp.args.JsonSave(meta)}),
            force=overwrite,
        )
    finally:
        checkpointer.close()
    return d


def load_sharded(
    directory: Any,
    *,
    config: Optional[TrainConfig] = None,
    devices: Optional[Sequence[Any]] = None,
) -> tuple[TrainState, dict[str, Any]]:
    """Read a :func:`save_sharded` folder into a state placed over ``devices`` (default: every
    device of every process), whatever number of processes wrote it: ``(state, metadata)``,
    leaves ``(S, ...)`` split along the seed axis. Call it on every process.

    ``config``: the architecture you expect (default: the stored one). Raises
    :class:`~adasym_jax.checkpoint.CheckpointError` for a folder that is not such a checkpoint
    or whose arrays do not match the architecture, and ``ValueError`` when the seeds do not
    divide over the devices.
    """
    d = Path(directory).absolute()
    if not (d / _META_ITEM).is_dir() or not (d / _STATE_ITEM).is_dir():
        raise CheckpointError(f"{d} is not a sharded checkpoint (no {_STATE_ITEM}/ and {_META_ITEM}/ folders)")
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    try:
        meta = checkpointer.restore(d, args=ocp.args.Composite(**{_META_ITEM: ocp.args.JsonRestore()}))[_META_ITEM]
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or not {"config", "dim", "seeds"} <= set(meta):
            raise CheckpointError(f"{d}: metadata is not that of a sharded adasym_jax checkpoint ({FORMAT})")
        try:
            cfg = TrainConfig.from_dict(meta["config"]) if config is None else config
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{d}: the stored config cannot be read by this version ({e})") from None
        seeds = [int(s) for s in meta["seeds"]]
        sharding = seed_sharding(len(seeds), devices)
        template = checkpoint_template(cfg, int(meta["dim"]), seeds)
        target = jax.tree.map(lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=sharding), template)
        try:
            restored = checkpointer.restore(d, args=ocp.args.Composite(**{_STATE_ITEM: ocp.args.StandardRestore(target)}))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{d}: the stored state does not match the architecture ({e})") from None
    finally:
        checkpointer.close()
    return restored[_STATE_ITEM], meta
