"""The runs of ``tests/test_distributed.py``: the same functions run in the test's own process
(one process, one CPU device) and, through ``python distributed_worker.py ...``, in each of
several local CPU processes joined by :func:`adasym_jax.distributed.initialize`.

Every function returns flat ``{name: NumPy array}`` dicts of gathered (full, ``(S, ...)``)
values, so the layouts can be compared array by array.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

SEEDS = [0, 1, 2, 3]
FIRST_STEPS = 2  # steps before the checkpoint
MORE_STEPS = 2  # steps after it


def flat(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    """``{prefix + key path: array}`` of a gathered pytree (``TrainState`` or metrics dict)."""
    import jax

    return {prefix + jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def train_and_save(trainer, data: np.ndarray, save_to: Path) -> dict[str, np.ndarray]:
    """``FIRST_STEPS`` steps, a checkpoint at ``save_to``, then ``MORE_STEPS`` more without
    leaving memory (the uninterrupted run): ``first/metrics``, ``first/state``,
    ``more/metrics``, ``more/state``. One ``trainer`` (a :class:`Trainer`) for every call, so
    its chunk compiles once."""
    from adasym_jax import distributed as dist

    config = trainer.config
    first = dist.train_sharded(config, data, SEEDS, FIRST_STEPS, trainer=trainer)
    dist.save_sharded(save_to, first.state, config, data.shape[1], SEEDS)
    more = dist.train_sharded(config, data, SEEDS, MORE_STEPS, state=first.state, trainer=trainer)
    assert more.step == FIRST_STEPS + MORE_STEPS
    return {
        **flat("first/metrics", first.metrics),
        **flat("first/state", dist.gather(first.state)),
        **flat("more/metrics", more.metrics),
        **flat("more/state", dist.gather(more.state)),
    }


def resume(trainer, data: np.ndarray, load_from: Path, tag: str) -> dict[str, np.ndarray]:
    """The checkpoint at ``load_from`` as restored here (``{tag}/loaded/state``) and trained
    ``MORE_STEPS`` further (``{tag}/resumed/metrics``, ``{tag}/resumed/state``)."""
    from adasym_jax import distributed as dist

    loaded, meta = dist.load_sharded(load_from)
    assert meta["seeds"] == SEEDS and meta["step"] == FIRST_STEPS, meta
    resumed = dist.train_sharded(trainer.config, data, SEEDS, MORE_STEPS, state=loaded, trainer=trainer)
    return {
        **flat(f"{tag}/loaded/state", dist.gather(loaded)),
        **flat(f"{tag}/resumed/metrics", resumed.metrics),
        **flat(f"{tag}/resumed/state", dist.gather(resumed.state)),
    }


def seeds_that_do_not_divide(trainer, data: np.ndarray) -> str:
    """The one-line error of :func:`train_sharded` for one seed more than the devices
    divide (raised before anything compiles)."""
    import jax

    from adasym_jax import distributed as dist

    try:
        dist.train_sharded(trainer.config, data, jax.device_count() + 1, 1, trainer=trainer)
    except ValueError as e:
        return str(e)
    raise AssertionError("train_sharded accepted seeds that do not divide over the devices")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--config", type=Path, required=True, help="TrainConfig.to_dict() as JSON")
    parser.add_argument("--data", type=Path, required=True, help=".npy of the (n, dim) training data")
    parser.add_argument("--save-to", type=Path, required=True)
    parser.add_argument("--load-from", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help=".npz of this process's results")
    args = parser.parse_args()

    from adasym_jax import distributed as dist

    dist.initialize(args.coordinator, args.num_processes, args.process_id, timeout_s=60)  # before any JAX computation

    import jax

    from adasym_jax.config import TrainConfig
    from adasym_jax.runner import Trainer

    assert jax.process_count() == args.num_processes and jax.local_device_count() == 1, jax.devices()
    config = TrainConfig.from_dict(json.loads(args.config.read_text()))
    data = np.load(args.data)
    trainer = Trainer(config, data.shape[1])
    error = seeds_that_do_not_divide(trainer, data)
    out = {
        **train_and_save(trainer, data, args.save_to),
        **resume(trainer, data, args.load_from, "other"),  # the checkpoint of the other layout
        **resume(trainer, data, args.save_to, "own"),  # its own checkpoint
    }
    np.savez(args.out, error=np.asarray(error), **out)


if __name__ == "__main__":
    main()
