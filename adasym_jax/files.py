"""Files: atomic writes with the user's file mode, JSON of numpy/JAX values.

Every file the library writes (checkpoints, ``metrics.json``, ``config.json``) goes through
:func:`atomic_write`, so an interrupted write never leaves a half file behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux's
    ``/proc/self/status``); elsewhere by setting and at once restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: ``0o666 & ~umask``. Temporary files
    from :func:`tempfile.mkstemp` are 0600; the atomic writers set this mode before renaming,
    so outputs follow the user's umask like any other file."""
    return 0o666 & ~current_umask()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: a temporary file in the same folder (mode
    :func:`new_file_mode`), flushed and synced, renamed over ``path``; the folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)


def jsonable(v: Any) -> Any:
    """``v`` with numpy/JAX arrays and scalars turned into lists and Python numbers,
    non-finite floats into ``None`` (JSON has no NaN); dict keys become strings."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray) or type(v).__module__.startswith("jax"):
        return jsonable(np.asarray(v).tolist())
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_json(path: str | os.PathLike, obj_: Any) -> None:
    """Atomically write ``obj_`` as indented JSON (:func:`jsonable`; NaN/inf become ``null``)."""
    atomic_write(Path(path), json.dumps(jsonable(obj_), indent=2, allow_nan=False).encode())
