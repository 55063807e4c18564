"""Minibatches by epochs at a per-step cost independent of the data size N.

An epoch visits the rows of the data in a fresh random order; its ``N // batch`` steps take
consecutive slices of that order, and the last ``N % batch`` rows of the order are not used in
that epoch (like a ``drop_last`` data loader; the next epoch's order differs, so every row is
trained on). The order is a keyed bijection of ``[0, N)`` (a Feistel network with cycle
walking) that is *evaluated* at the slice's positions instead of materialized: slice ``p`` of
epoch ``e`` costs ``O(batch)`` integer operations whatever N is, it needs no O(N) permutation
per step, per chunk or per epoch, and it is a pure function of ``(epoch key, position)`` —
vmappable over seeds, identical on resume and bitwise the same vmapped or one seed at a time.

Where the epoch key lives: in a minibatch run :class:`~adasym_jax.runner.Trainer` keeps
``state.key`` fixed through an epoch (it is the epoch's key), hands the step a per-step key
derived from it, and advances it at the epoch's last step (:func:`minibatch_keys`). Full-batch
runs never come here: their key stream is the step's own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

FEISTEL_ROUNDS = 6


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Steps per epoch, ``n // batch_size`` (the last partial batch is dropped)."""
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"batch size must be in [1, {n}] for {n} rows, got {batch_size}")
    return n // batch_size


def _mix32(x: Array) -> Array:
    """A bijective 32-bit integer mixer (``lowbias32``)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def permuted_positions(key: Array, positions: Array, n: int) -> Array:
    """Entries ``positions`` (int, each in ``[0, n)``) of the random permutation of
    ``range(n)`` that ``key`` (raw ``uint32[2]``) names; int32, same shape as ``positions``.

    ``permuted_positions(key, jnp.arange(n), n)`` is the whole permutation; any slice of it
    costs O(len(positions)) whatever ``n`` is.
    """
    if n < 1:
        raise ValueError(f"need n >= 1, got {n}")
    half = max(1, ((n - 1).bit_length() + 1) // 2)  # domain 2^(2·half) >= n, < 4n
    mask = jnp.uint32((1 << half) - 1)
    round_keys = jax.random.bits(key, (FEISTEL_ROUNDS,), jnp.uint32)

    def feistel(v):
        left, right = v >> half, v & mask
        for i in range(FEISTEL_ROUNDS):
            left, right = right, left ^ (_mix32(right ^ round_keys[i]) & mask)
        return (left << half) | right

    v = feistel(jnp.asarray(positions).astype(jnp.uint32))
    # cycle walking: re-encrypt what falls outside [0, n) (a bijection of [0, n); < 4 rounds expected)
    v = jax.lax.while_loop(lambda v: jnp.any(v >= n), lambda v: jnp.where(v >= n, feistel(v), v), v)
    return v.astype(jnp.int32)


def batch_indices(epoch_key: Array, step: Array, n: int, batch_size: int) -> Array:
    """Row indices ``(batch_size,)`` of the minibatch at global ``step``: slice
    ``step % E`` (``E`` = :func:`batches_per_epoch`) of the order of the epoch keyed by
    ``epoch_key``."""
    pos = jnp.asarray(step, jnp.int32) % batches_per_epoch(n, batch_size)
    return permuted_positions(epoch_key, pos * batch_size + jnp.arange(batch_size, dtype=jnp.int32), n)


def minibatch_keys(key: Array, step: Array, n: int, batch_size: int) -> tuple[Array, Array, Array]:
    """From ``key``, the epoch key held in the state during an epoch, and the global
    ``step``: ``(order key, the step's own key, the state's key after this step)``. The last
    is ``key`` itself except at the epoch's last step, where it becomes the next epoch's key."""
    per_epoch = batches_per_epoch(n, batch_size)
    k_order, k_steps, k_next = jax.random.split(key, 3)
    pos = jnp.asarray(step, jnp.int32) % per_epoch
    after = jnp.where(pos == per_epoch - 1, k_next, key)
    return k_order, jax.random.fold_in(k_steps, pos), after
