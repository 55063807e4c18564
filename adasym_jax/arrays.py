"""User arrays: loading ``.npy`` / ``.npz`` files and numeric text tables (``.csv``, ``.tsv``,
``.txt``) with validation.

Standardization lives in :class:`adasym_jax.checkpoint.Standardization` (saved with runs).

Every problem is reported as :class:`ArrayFileError` (a ``ValueError``) with a one-line
message naming the file, before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Optional

import numpy as np

#: Keys tried, in order, when an ``.npz`` holds several arrays and none is named.
NPZ_KEYS = ("x", "data", "train", "arr_0")
#: Suffixes read as numeric text tables (one row per point): delimiter per suffix
#: (``None``: any whitespace). A first line that is not numeric is taken as a header.
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Where a loaded array came from: the file, the ``.npz`` key used (``None`` for other
    files), every array name in the ``.npz`` (empty otherwise) and whether a text header row
    was skipped."""

    path: str
    key: Optional[str] = None
    names: tuple[str, ...] = ()
    header: bool = False

    def __str__(self) -> str:
        return self.path if self.key is None else f"{self.path}:{self.key}"


class ArrayFileError(ValueError):
    """A data file is missing, unreadable or does not hold a valid ``(n, dim)`` array."""


def _numbers(parts: list[str]) -> list[bool]:
    ok = []
    for p in parts:
        try:
            float(p)
            ok.append(True)
        except ValueError:
            ok.append(False)
    return ok


def _is_numeric_row(line: str, delimiter: Optional[str]) -> bool:
    """Every field parses as a number (an empty field does not)."""
    return all(_numbers([p.strip() for p in line.split(delimiter)]))


def _is_header(line: str, delimiter: Optional[str]) -> bool:
    """Some non-empty field is not a number (column names)."""
    parts = [p.strip() for p in line.split(delimiter)]
    return any(p and not ok for p, ok in zip(parts, _numbers(parts)))


def _read_text(path: str, delimiter: Optional[str]) -> tuple[np.ndarray, bool]:
    """A numeric table from a text file, skipping ``#`` comments and one header row."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [
                (i, ln) for i, ln in enumerate(f.read().splitlines(), start=1)
                if ln.strip() and not ln.lstrip().startswith("#")
            ]
    except (OSError, UnicodeDecodeError) as e:
        raise ArrayFileError(f"{path}: not a readable text table ({type(e).__name__})") from None
    header = bool(lines) and _is_header(lines[0][1], delimiter)
    rows = lines[1:] if header else lines
    if not rows:
        raise ArrayFileError(f"{path}: no numeric rows")
    for i, ln in rows:
        if not _is_numeric_row(ln, delimiter):
            raise ArrayFileError(f"{path}: line {i} is not all numbers: {ln.strip()[:60]!r}")
    try:
        arr = np.loadtxt([ln for _, ln in rows], delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError as e:
        msg = str(e).splitlines()[0].split(";")[0] if str(e) else "bad value"
        raise ArrayFileError(f"{path}: not a numeric table ({msg})") from None
    return arr, header


def _read(path: str, key: Optional[str]) -> np.ndarray:
    return _read_with_source(path, key)[0]


def _read_with_source(path: str, key: Optional[str]) -> tuple[np.ndarray, ArraySource]:
    if not os.path.isfile(path):
        raise ArrayFileError(f"{path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in TEXT_SUFFIXES:
        if key is not None:
            raise ArrayFileError(f"{path}: a text table holds one array; drop the ':{key}' suffix")
        arr, header = _read_text(path, TEXT_SUFFIXES[suffix])
        return arr, ArraySource(path, header=header)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Object arrays" in msg:
            raise ArrayFileError(f"{path}: holds Python objects (pickled data), which are not loaded; save a numeric array") from None
        if "pickle" in msg:  # no .npy/.npz header: NumPy would fall back to unpickling
            raise ArrayFileError(
                f"{path}: not a .npy/.npz file (numeric text tables are read from .csv, .tsv or .txt files)"
            ) from None
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
                return loaded[chosen], ArraySource(path, chosen, tuple(names))
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ArrayFileError(f"{path}: array {chosen!r} is unreadable ({msg})") from None
    if key is not None:
        raise ArrayFileError(f"{path}: a .npy file holds one array; drop the ':{key}' suffix")
    return loaded, ArraySource(path)


def split_key(spec: str) -> tuple[str, Optional[str]]:
    """``"file.npz:name"`` -> ``("file.npz", "name")``; other paths -> ``(path, None)``."""
    head, sep, tail = spec.rpartition(":")
    if sep and head.endswith(".npz") and tail and "/" not in tail:
        return head, tail
    return spec, None


def load_array(spec: str, name: str = "data", dim: Optional[int] = None, min_rows: int = 2) -> np.ndarray:
    """Load a 2-D real array from ``spec`` (``file.npy``, ``file.npz``, ``file.npz:key``, or a
    numeric text table ``file.csv`` / ``file.tsv`` / ``file.txt``, optionally with a header row).

    Checks: shape ``(n, dim)`` with ``n >= min_rows`` (and the given ``dim``), a real numeric
    dtype, finite values. Returns float32 ``(n, dim)``.
    """
    return load_array_with_source(spec, name, dim, min_rows)[0]


def load_array_with_source(
    spec: str, name: str = "data", dim: Optional[int] = None, min_rows: int = 2
) -> tuple[np.ndarray, ArraySource]:
    """:func:`load_array` plus the :class:`ArraySource` (file, ``.npz`` key, the ``.npz``'s names)."""
    path, key = split_key(str(spec))
    arr, source = _read_with_source(path, key)
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
    return arr.astype(np.float32), source
