"""The jit of the library's compiled programs: :func:`tuned_jit` and its XLA options.

A leaf module (it imports nothing else of :mod:`adasym_jax`), so every layer can compile
through it. Use it for your own programs too: ``tuned_jit(make_train_step(config, flow, ebm))``
compiles a step as the library's runner compiles its chunks; on CPU a bare ``jax.jit`` of the
1-seed adasym step took 86 ms against 47 ms (``benchmarks/results/profile.md``).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import jax
import numpy as np

__all__ = ["compiler_options", "tuned_jit"]


@functools.lru_cache(maxsize=None)
def compiler_options() -> Optional[tuple[tuple[str, str], ...]]:
    """XLA options of the library's compiled programs (``None``: XLA's defaults).

    On the CPU backend: no YNNPACK library fusions (``xla_cpu_experimental_ynn_fusion_type``
    empty). XLA:CPU otherwise hands small reductions and elementwise chains of the spline
    and LayerNorm to YNNPACK, which measured 1.7× slower on the 5-seed adasym step
    (``benchmarks/results/profile.md``). A ``XLA_FLAGS`` that sets the option itself wins, and
    a jaxlib without the option gets the defaults.
    """
    if jax.default_backend() != "cpu" or "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return None
    options = (("xla_cpu_experimental_ynn_fusion_type", ""),)
    try:
        jax.jit(lambda a: a + 1, compiler_options=dict(options)).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 - an XLA without this option: keep its defaults
        return None
    return options


class tuned_jit:
    """``jax.jit(fn)`` that compiles with :func:`compiler_options` when called (or lowered)
    at the top level. JAX accepts compiler options on top-level jits only, so a call from
    inside another trace (``jax.jit``, ``jax.eval_shape``, ``jax.vmap``) uses the plain jit."""

    def __init__(self, fn):
        self._fn = fn
        self._plain = jax.jit(fn)
        self._tuned_jit = None  # built at the first top-level use, see _tuned

    @property
    def _tuned(self):
        # compiler_options() starts JAX's backend, so it waits for the first call: a module-level
        # ``@tuned_jit`` must not start it at import, before ``jax.distributed.initialize``
        if self._tuned_jit is None:
            options = compiler_options()
            self._tuned_jit = self._plain if options is None else jax.jit(self._fn, compiler_options=dict(options))
        return self._tuned_jit

    def _pick(self, args):
        nested = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args))
        return self._plain if nested else self._tuned

    def __call__(self, *args):
        return self._pick(args)(*args)

    def lower(self, *args):
        return self._pick(args).lower(*args)

    def __getattr__(self, name):
        if name in ("_fn", "_plain", "_tuned_jit"):  # not set yet (e.g. a copy): no recursion
            raise AttributeError(name)
        return getattr(self._tuned, name)
