"""Plain checkpoints: the state as msgpack (``flax.serialization``) plus JSON metadata.

No pickle of our classes: a checkpoint is ``state.msgpack`` (nested dicts of arrays) and
``checkpoint.json`` (config, dim, seeds, step, format version, user extras). Writes go to a
temporary file that is renamed into place, so a crash never leaves a half-written file over
a good one. Loading checks every array's shape and dtype against a freshly built template.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np
from flax import serialization

from adasym_jax.config import TrainConfig
from adasym_jax.state import TrainState

FORMAT_VERSION = 1
STATE_FILE = "state.msgpack"
META_FILE = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or does not match the expected architecture."""


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(
    directory: str | os.PathLike,
    state: TrainState,
    config: TrainConfig,
    dim: int,
    seeds: list[int],
    extra: Optional[dict[str, Any]] = None,
) -> Path:
    """Write ``state`` (seeds stacked) with its config to ``directory``; returns the folder.

    ``extra`` holds JSON-serializable metadata (e.g. data standardization statistics).
    """
    d = Path(directory)
    host_state = jax.device_get(state)
    payload = serialization.msgpack_serialize(serialization.to_state_dict(host_state))
    meta = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "dim": int(dim),
        "seeds": [int(s) for s in seeds],
        "step": int(np.asarray(host_state.step).reshape(-1)[0]),
        "extra": extra or {},
    }
    _atomic_write(d / STATE_FILE, payload)
    _atomic_write(d / META_FILE, json.dumps(meta, indent=2).encode())
    return d


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint; raises :class:`CheckpointError` if absent or bad."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {META_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    for key in ("format_version", "config", "dim", "seeds"):
        if key not in meta:
            raise CheckpointError(f"{path} lacks the key {key!r}")
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {meta['format_version']}; this package reads <= {FORMAT_VERSION}")
    return meta


def _check_tree(template: Any, loaded: Any, path: str = "") -> None:
    if isinstance(template, dict):
        if not isinstance(loaded, dict):
            raise CheckpointError(f"checkpoint entry {path or '/'} is not a mapping")
        missing = set(template) - set(loaded)
        extra = set(loaded) - set(template)
        if missing or extra:
            raise CheckpointError(
                f"checkpoint does not match the architecture at {path or '/'}: "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        for k in template:
            _check_tree(template[k], loaded[k], f"{path}/{k}")
        return
    t, l_ = np.asarray(template), np.asarray(loaded)
    if t.shape != l_.shape:
        raise CheckpointError(f"checkpoint array {path} has shape {l_.shape}, expected {t.shape}")


def load_checkpoint(directory: str | os.PathLike, template: Optional[TrainState] = None):
    """Read a checkpoint: returns ``(state, metadata)``.

    ``template`` is a state of the expected structure (e.g. ``Trainer(config, dim).init(seeds)``);
    when omitted it is built from the stored config, dim and seeds.
    """
    meta = read_metadata(directory)
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {STATE_FILE} is missing")
    try:
        loaded = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack raises several types on truncated data
        raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from None
    if template is None:
        from adasym_jax.runner import Trainer

        config = TrainConfig.from_dict(meta["config"])
        template = Trainer(config, meta["dim"]).init(meta["seeds"])
    template_dict = serialization.to_state_dict(jax.device_get(template))
    _check_tree(template_dict, loaded)
    state = serialization.from_state_dict(template, loaded)
    state = jax.tree.map(lambda t, v: np.asarray(v, dtype=np.asarray(t).dtype), template, state)
    return state, meta
