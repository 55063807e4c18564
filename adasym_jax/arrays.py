"""User arrays: loading ``.npy`` / ``.npz`` files with validation.

Standardization lives in :class:`adasym_jax.checkpoint.Standardization` (saved with runs).

Every problem is reported as :class:`ArrayFileError` (a ``ValueError``) with a one-line
message naming the file, before anything is compiled.
"""

from __future__ import annotations

import os
import zipfile
from typing import Optional

import numpy as np

#: Keys tried, in order, when an ``.npz`` holds several arrays and none is named.
NPZ_KEYS = ("x", "data", "train", "arr_0")


class ArrayFileError(ValueError):
    """A data file is missing, unreadable or does not hold a valid ``(n, dim)`` array."""


def _read(path: str, key: Optional[str]) -> np.ndarray:
    if not os.path.isfile(path):
        raise ArrayFileError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ArrayFileError(f"{path}: not a readable .npy/.npz file ({msg})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if key is not None:
                if key not in names:
                    raise ArrayFileError(f"{path}: no array named {key!r} (has {', '.join(names) or 'none'})")
                chosen = key
            elif len(names) == 1:
                chosen = names[0]
            else:
                found = [k for k in NPZ_KEYS if k in names]
                if not found:
                    raise ArrayFileError(
                        f"{path}: holds {len(names)} arrays ({', '.join(names)}); name one as {path}:KEY"
                    )
                chosen = found[0]
            try:
                return loaded[chosen]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                raise ArrayFileError(f"{path}: array {chosen!r} is unreadable ({e})") from None
    if key is not None:
        raise ArrayFileError(f"{path}: a .npy file holds one array; drop the ':{key}' suffix")
    return loaded


def split_key(spec: str) -> tuple[str, Optional[str]]:
    """``"file.npz:name"`` -> ``("file.npz", "name")``; other paths -> ``(path, None)``."""
    head, sep, tail = spec.rpartition(":")
    if sep and head.endswith(".npz") and tail and "/" not in tail:
        return head, tail
    return spec, None


def load_array(spec: str, name: str = "data", dim: Optional[int] = None, min_rows: int = 2) -> np.ndarray:
    """Load a 2-D real array from ``spec`` (``file.npy``, ``file.npz`` or ``file.npz:key``).

    Checks: shape ``(n, dim)`` with ``n >= min_rows`` (and the given ``dim``), a real numeric
    dtype, finite values. Returns float32 ``(n, dim)``.
    """
    path, key = split_key(str(spec))
    arr = _read(path, key)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ArrayFileError(f"{path}: {name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ArrayFileError(f"{path}: {name} must be 2-D (n, dim), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ArrayFileError(f"{path}: {name} has {arr.shape[0]} rows, need at least {min_rows}")
    if arr.shape[1] < 1:
        raise ArrayFileError(f"{path}: {name} has no columns")
    if dim is not None and arr.shape[1] != dim:
        raise ArrayFileError(f"{path}: {name} has {arr.shape[1]} columns, expected {dim} (the training data's dim)")
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ArrayFileError(f"{path}: {name} contains {bad} NaN or infinite values")
    return arr.astype(np.float32)
