"""JAX's persistent compilation cache for the interoperability tests (issue 7).

Identical programs built by different ``Trainer`` objects (a resumed run, the docs examples,
the notebook's kernel) then compile once per machine instead of once per test. The folder is
per user in the temp directory, shared with ``tests/test_notebook_quickstart.py``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import jax

_NAMES = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes")
# The same variables for a subprocess (a notebook kernel).
ENV = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES")


def cache_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"adasym-test-jax-cache-{os.getuid()}")


@contextlib.contextmanager
def persistent_cache():
    """Turn the cache on (every program, however small) and restore the settings after."""
    try:
        from jax._src import compilation_cache as cc
    except ImportError:  # pragma: no cover - private module moved
        yield None
        return
    old = {n: getattr(jax.config, n) for n in _NAMES}
    for n, v in zip(_NAMES, (cache_dir(), 0.0, 0)):
        jax.config.update(n, v)
    cc.reset_cache()
    try:
        yield cache_dir()
    finally:
        for n, v in old.items():
            jax.config.update(n, v)
        cc.reset_cache()
