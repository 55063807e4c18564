"""Plain checkpoints: the state as msgpack (``flax.serialization``) plus JSON metadata.

No pickle of our classes: a checkpoint folder holds the state as nested dicts of arrays in
``state-<hash>.msgpack`` and ``checkpoint.json`` (config, dim, seeds, step, format version,
the state file's name, size and SHA-256, user extras such as data standardization).

Crash safety: the state file is written under a content-addressed name (temporary file,
fsync, rename), then ``checkpoint.json`` is replaced the same way. Replacing the JSON is the
single commit point: until it happens the folder still describes the previous, complete
checkpoint (whose state file is only deleted afterwards). Loading checks the file's size and
checksum, then every array's shape against the architecture the config describes, and names
whatever does not match.

Format 1 (``state.msgpack``, no checksum) is still read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import jax
import numpy as np
from flax import serialization

from adasym_jax.files import atomic_write as _atomic_write
from adasym_jax.files import current_umask, new_file_mode  # noqa: F401  (re-exported)

from adasym_jax._version import __version__
from adasym_jax.config import TRACE_ONLY_FIELDS, TrainConfig
from adasym_jax.state import TrainState, build_models, init_state, num_stacked_seeds

FORMAT_VERSION = 2
STATE_FILE = "state.msgpack"  # the state file of format 1
META_FILE = "checkpoint.json"
STANDARDIZATION_KEY = "standardization"
_META_KEYS = ("format_version", "config", "dim", "seeds")

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or does not match the expected architecture."""


# -- data standardization ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Standardization:
    """Per-coordinate affine map ``z = (x - mean) / std`` applied to data before training.

    The spline flow acts on ``[-B, B]``, so data are usually standardized; the statistics are
    saved with the run (``save_checkpoint(..., standardization=s)``) so that densities and
    samples can be mapped back to data space. ``mean`` and ``std`` are float32 ``(dim,)``.

    The one standardization type of the package (2D runs, SBI's β, latent and pixel runs).
    Sign convention, everywhere: :attr:`log_det` is ``log |det dx/dz| = Σ log std`` (data per
    standardized unit), so ``log p_data(x) = log p_z(apply(x)) − log_det`` and an NLL in data
    units is the standardized NLL ``+ log_det``.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        mean = np.asarray(self.mean, np.float32).reshape(-1)
        std = np.asarray(self.std, np.float32).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"standardization mean has shape {mean.shape} but std has shape {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("standardization needs finite mean and finite std > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, x, min_std: float = 1e-6) -> "Standardization":
        """Mean and standard deviation of ``x (n, dim)`` per column (std floored at ``min_std``)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"standardization needs data of shape (n >= 2, dim), got {x.shape}")
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), min_std))

    @property
    def dim(self) -> int:
        """The data dimension (length of ``mean`` and ``std``)."""
        return int(self.mean.shape[0])

    def apply(self, x):
        """Data -> standardized coordinates, ``(..., dim) -> (..., dim)`` (NumPy or JAX)."""
        return (x - self.mean) / self.std

    def invert(self, z):
        """Standardized coordinates -> data, ``(..., dim) -> (..., dim)`` (NumPy or JAX)."""
        return z * self.std + self.mean

    @property
    def log_det(self) -> float:
        """``log |det dx/dz| = Σ log std``: subtract it from a log-density in standardized
        coordinates to get the log-density in data space."""
        return float(np.sum(np.log(self.std.astype(np.float64))))

    def to_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` (JSON-ready; stored as ``extra["standardization"]``)."""
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Standardization":
        """Inverse of :meth:`to_dict`; a malformed entry raises :class:`CheckpointError`.
        ``"scale"`` is read as ``"std"`` (the key of SBI run settings written before the two
        were one type)."""
        if isinstance(d, Mapping) and "std" not in d and "scale" in d:
            d = {"mean": d.get("mean"), "std": d["scale"]}
        if not isinstance(d, Mapping) or "mean" not in d or "std" not in d:
            raise CheckpointError("standardization entry must be a mapping with keys 'mean' and 'std'")
        return cls(np.asarray(d["mean"]), np.asarray(d["std"]))


#: Keys of standardizations saved before :class:`Standardization` was the only type:
#: ``adasym latent`` wrote ``extra["latent_mean"/"latent_std"]`` (autoencoder latents) or
#: ``extra["pixel_mean"/"pixel_std"]`` (pixel space) instead of ``extra["standardization"]``.
LEGACY_STANDARDIZATION_KEYS = (("latent_mean", "latent_std"), ("pixel_mean", "pixel_std"))


def read_standardization(source: Union[PathLike, Mapping[str, Any]]) -> Optional[Standardization]:
    """The :class:`Standardization` stored with a checkpoint (folder or its metadata dict), or
    ``None`` if the run was trained on raw data."""
    meta = source if isinstance(source, Mapping) else read_metadata(source)
    extra = meta.get("extra") or {}
    entry = extra.get(STANDARDIZATION_KEY)
    if entry is None:  # a latent run folder written before the one type (see LEGACY_STANDARDIZATION_KEYS)
        for mean_key, std_key in LEGACY_STANDARDIZATION_KEYS:
            if mean_key in extra and std_key in extra:
                entry = {"mean": extra[mean_key], "std": extra[std_key]}
                break
    return None if entry is None else Standardization.from_dict(entry)


# -- writing -----------------------------------------------------------------------------


def extra_with_standardization(
    extra: Optional[Mapping[str, Any]], standardization: Optional[Standardization], dim: int
) -> dict[str, Any]:
    """A checkpoint's ``extra`` metadata with ``standardization`` stored under
    ``STANDARDIZATION_KEY`` (a ``ValueError`` when its dim is not the model's ``dim``, or when
    an entry already in ``extra`` is not a valid standardization)."""
    extra = dict(extra or {})
    if standardization is not None:
        if standardization.dim != int(dim):
            raise ValueError(f"standardization has dim {standardization.dim}, the model has dim {dim}")
        extra[STANDARDIZATION_KEY] = standardization.to_dict()
    elif STANDARDIZATION_KEY in extra:
        Standardization.from_dict(extra[STANDARDIZATION_KEY])  # validate before writing
    return extra


def save_checkpoint(
    directory: PathLike,
    state: TrainState,
    config: TrainConfig,
    dim: int,
    seeds: list[int],
    extra: Optional[dict[str, Any]] = None,
    *,
    standardization: Optional[Standardization] = None,
) -> Path:
    """Write ``state`` (seeds stacked on the leading axis) with its config to ``directory``.

    Args:
      directory: folder of the checkpoint (created if needed; an older checkpoint there is
        replaced only once the new one is completely on disk).
      state: :class:`TrainState` whose leaves have a leading seed axis ``(len(seeds), ...)``.
      config, dim, seeds: what is needed to rebuild the models (stored as JSON).
      extra: JSON-serializable metadata of your own.
      standardization: data statistics, stored as ``extra["standardization"]``.

    Returns the folder. Raises ``ValueError`` before writing anything if the inputs disagree.
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ValueError(f"checkpoint path {d} exists and is not a folder")
    seeds = [int(s) for s in seeds]
    n = num_stacked_seeds(state)
    if n != len(seeds):
        raise ValueError(
            f"state holds {n if n is not None else 'no'} stacked seeds but {len(seeds)} seeds were given; "
            "save the stacked state of Trainer.init/run/fit"
        )
    extra = extra_with_standardization(extra, standardization, dim)
    host_state = jax.device_get(state)
    payload = serialization.msgpack_serialize(serialization.to_state_dict(host_state))
    digest = hashlib.sha256(payload).hexdigest()
    state_name = f"state-{digest[:16]}.msgpack"
    meta = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "dim": int(dim),
        "seeds": seeds,
        "step": int(np.asarray(host_state.step).reshape(-1)[0]),
        "state_file": state_name,
        "state_bytes": len(payload),
        "state_sha256": digest,
        "package_version": __version__,
        "extra": extra,
    }
    try:
        meta_bytes = json.dumps(meta, indent=2, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint metadata is not JSON-serializable ({e}); check `extra`") from None
    _atomic_write(d / state_name, payload)
    _atomic_write(d / META_FILE, meta_bytes)  # the commit point
    for old in d.glob("state*.msgpack"):
        if old.name != state_name:
            old.unlink(missing_ok=True)
    return d


# -- reading -----------------------------------------------------------------------------


def is_checkpoint(directory: PathLike) -> bool:
    """True if ``directory`` holds readable checkpoint metadata (the state is not read)."""
    try:
        read_metadata(directory)
    except CheckpointError:
        return False
    return True


def read_metadata(directory: PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint; raises :class:`CheckpointError` if absent or bad."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {META_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is truncated or not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    for key in _META_KEYS:
        if key not in meta:
            raise CheckpointError(f"{path} lacks the key {key!r}")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}; this package reads <= {FORMAT_VERSION}")
    if version >= 2:
        for key in ("state_file", "state_bytes", "state_sha256"):
            if key not in meta:
                raise CheckpointError(f"{path} lacks the key {key!r}")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: 'config' must be a JSON object")
    return meta


def _config_from_meta(meta: Mapping[str, Any], directory: PathLike) -> TrainConfig:
    try:
        return TrainConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory}: the stored config cannot be read by this version ({e})") from None


def _config_differences(stored: Mapping[str, Any], config: TrainConfig) -> list[str]:
    out = []
    for key, value in config.to_dict().items():
        if key in stored and key not in TRACE_ONLY_FIELDS:
            old = stored[key]
            old = tuple(old) if isinstance(old, list) else old
            if old != value:
                out.append(f"{key}: checkpoint {old!r} vs {value!r}")
    return out


def _check_tree(template: Any, loaded: Any, path: str = "") -> None:
    if isinstance(template, dict):
        if not isinstance(loaded, dict):
            raise CheckpointError(f"checkpoint entry {path or '/'} is not a mapping")
        missing = set(template) - set(loaded)
        extra = set(loaded) - set(template)
        if missing or extra:
            raise CheckpointError(
                f"checkpoint does not match the architecture at {path or '/'}: "
                f"missing keys {sorted(missing)}, unexpected keys {sorted(extra)}"
            )
        for k in template:
            _check_tree(template[k], loaded[k], f"{path}/{k}")
        return
    if isinstance(loaded, dict):
        raise CheckpointError(f"checkpoint entry {path} is a mapping where an array was expected")
    t_shape = tuple(getattr(template, "shape", np.shape(template)))
    l_shape = tuple(np.shape(loaded))
    if t_shape != l_shape:
        raise CheckpointError(f"checkpoint array {path} has shape {l_shape}, expected {t_shape}")
    t_kind = np.dtype(getattr(template, "dtype", np.asarray(template).dtype)).kind
    l_kind = np.asarray(loaded).dtype.kind
    if (t_kind == "f") != (l_kind == "f"):
        raise CheckpointError(f"checkpoint array {path} has dtype kind {l_kind!r}, expected {t_kind!r}")


def _read_state_bytes(directory: PathLike, meta: Mapping[str, Any]) -> bytes:
    name = meta.get("state_file", STATE_FILE) if meta["format_version"] >= 2 else STATE_FILE
    if not isinstance(name, str) or Path(name).name != name:
        raise CheckpointError(f"{directory}: invalid state_file entry {name!r}")
    path = Path(directory) / name
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a complete checkpoint: {name} is missing")
    data = path.read_bytes()
    if meta["format_version"] >= 2:
        expected = int(meta["state_bytes"])
        if len(data) != expected:
            raise CheckpointError(f"{path} is truncated or damaged: {len(data)} bytes, expected {expected}")
        if hashlib.sha256(data).hexdigest() != meta["state_sha256"]:
            raise CheckpointError(f"{path} is corrupt: its SHA-256 does not match {META_FILE}")
    return data


def checkpoint_template(config: TrainConfig, dim: int, seeds: list[int]) -> TrainState:
    """Shapes and dtypes (``jax.ShapeDtypeStruct`` leaves) of the state for ``config``, ``dim``
    and ``seeds``, computed without running or compiling anything."""
    dim = int(dim)
    if dim < 1:
        raise CheckpointError(f"dim must be >= 1, got {dim}")
    flow, ebm = build_models(config, dim)
    keys = jax.numpy.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    return jax.eval_shape(jax.vmap(lambda k: init_state(config, flow, ebm, k, dim)), keys)


def load_checkpoint(
    directory: PathLike,
    template: Optional[TrainState] = None,
    *,
    config: Optional[TrainConfig] = None,
):
    """Read a checkpoint: returns ``(state, metadata)``; leaves are NumPy arrays with a
    leading seed axis.

    Args:
      directory: the checkpoint folder.
      template: a state of the expected structure (e.g. ``Trainer(config, dim).init(seeds)``,
        or shapes from :func:`checkpoint_template`); by default built from ``config``.
      config: the architecture you expect; by default the stored one. A mismatch with the
        stored arrays raises :class:`CheckpointError` naming the array and the config fields
        that differ.

    Raises :class:`CheckpointError` (a ``ValueError``) on a missing or truncated file, a bad
    checksum, a missing key or a shape mismatch.
    """
    meta = read_metadata(directory)
    data = _read_state_bytes(directory, meta)
    try:
        loaded = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises several types on truncated data
        raise CheckpointError(f"{directory}: state file is truncated or corrupt ({type(e).__name__}: {e})") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{directory}: state file does not hold a mapping of arrays")
    if template is None:
        cfg = config if config is not None else _config_from_meta(meta, directory)
        template = checkpoint_template(cfg, meta["dim"], meta["seeds"])
    if getattr(template, "zeta_cache", None) is None:
        # states saved before the cache field have none; a saved cache that the config does not
        # use (evaluation and sampling never read it) is dropped
        loaded["zeta_cache"] = None
    try:
        _check_tree(serialization.to_state_dict(template), loaded)
    except CheckpointError as e:
        hint = ""
        if config is not None:
            diffs = _config_differences(meta["config"], config)
            if diffs:
                hint = "; config differs in " + ", ".join(diffs)
        raise CheckpointError(f"{directory}: {e}{hint}") from None
    state = serialization.from_state_dict(template, loaded)
    state = jax.tree.map(lambda t, v: np.asarray(v, dtype=np.dtype(t.dtype)), template, state)
    return state, meta
