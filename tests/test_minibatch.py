"""Minibatches by epochs: every row once per epoch, fresh orders, no O(N) work per step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adasym_jax as aj
from adasym_jax import minibatch as mb


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 17, 255, 256, 257, 1000])
def test_permuted_positions_is_a_permutation_and_slices_agree(n):
    key = jax.random.PRNGKey(n)
    whole = np.asarray(mb.permuted_positions(key, jnp.arange(n), n))
    np.testing.assert_array_equal(np.sort(whole), np.arange(n))
    cut = n // 3
    parts = [mb.permuted_positions(key, jnp.arange(cut), n), mb.permuted_positions(key, jnp.arange(cut, n), n)]
    np.testing.assert_array_equal(np.concatenate([np.asarray(p) for p in parts]), whole)


def test_orders_are_uniform_over_keys():
    # 4000 keys: the row at each position should be uniform over the 5 rows (a fixed or
    # biased order fails); counts are binomial(4000, 1/5): mean 800, sd 25.3.
    n, trials = 5, 4000
    keys = jax.random.split(jax.random.PRNGKey(0), trials)
    perms = np.asarray(jax.vmap(lambda k: mb.permuted_positions(k, jnp.arange(n), n))(keys))
    for pos in range(n):
        counts = np.bincount(perms[:, pos], minlength=n)
        assert np.all(np.abs(counts - trials / n) < 5 * 25.3), (pos, counts)
    assert len({tuple(p) for p in perms}) == 120  # all 5! orders occur


def test_batch_size_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="batch size"):
        mb.batches_per_epoch(10, 11)
    with pytest.raises(ValueError, match="batch size"):
        mb.batches_per_epoch(10, 0)


N, BS = 50, 8  # 6 batches per epoch, 2 rows left out of each epoch (drop_last)


def _recording_trainer(tiny_config):
    tr = aj.Trainer(tiny_config.replace(method="nf", batch_size=BS), 2)

    def step(state, batch):  # records the rows it got and the key it was handed
        metrics = {"rows": batch.x[:, 0].astype(jnp.int32), "key": state.key}
        return state.replace(step=state.step + 1, key=jax.random.split(state.key)[0]), metrics

    tr.step = step
    return tr


def _data():
    return np.stack([np.arange(N), np.zeros(N)], axis=1).astype(np.float32)


def test_each_row_once_per_epoch_fresh_orders_and_resume(tiny_config):
    tr = _recording_trainer(tiny_config)
    per_epoch, epochs = N // BS, 3
    s0 = tr.init([0, 1])
    state, m = tr.run(s0, _data(), per_epoch * epochs)
    rows = np.asarray(m["rows"])  # (seeds, steps, BS)
    for seed in range(2):
        orders = rows[seed].reshape(epochs, per_epoch * BS)
        for e in range(epochs):
            assert len(set(orders[e])) == per_epoch * BS, (seed, e)  # every row at most once
        assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
        assert len(set(orders.reshape(-1))) == N  # over epochs, the dropped rows are used too
    assert not np.array_equal(rows[0], rows[1])  # seeds draw different orders
    # the step gets a different key at every step; the state's key moves once per epoch
    keys = np.asarray(m["key"])[0]
    assert len({tuple(k) for k in keys}) == len(keys)
    # resumable: the same rows in chunks of 5 + 13 steps, and one seed at a time
    half, mh = tr.run(s0, _data(), 5)
    _, mr = tr.run(half, _data(), per_epoch * epochs - 5)
    np.testing.assert_array_equal(np.concatenate([mh["rows"], mr["rows"]], axis=1), rows)
    for i, seed in enumerate([0, 1]):
        _, ms = tr.run(tr.init([seed]), _data(), per_epoch * epochs)
        np.testing.assert_array_equal(np.asarray(ms["rows"])[0], rows[i])


def test_state_key_is_the_epoch_key(tiny_config):
    tr = _recording_trainer(tiny_config)
    per_epoch = N // BS
    s0 = tr.init([0])
    s1, _ = tr.run(s0, _data(), per_epoch - 1)
    np.testing.assert_array_equal(s1.key, s0.key)  # fixed through the epoch
    s2, _ = tr.run(s1, _data(), 1)
    assert not np.array_equal(s2.key, s0.key)  # the next epoch's key


def test_minibatch_nf_vmapped_equals_one_seed_at_a_time(tiny_config):
    x = np.asarray(aj.load_dataset("moons", n_train=200, n_test=10)[0])
    tr = aj.Trainer(tiny_config.replace(method="nf", batch_size=32), 2)
    _, m = tr.run(tr.init([3, 8]), x, 8)
    for i, seed in enumerate([3, 8]):
        _, ms = tr.run(tr.init([seed]), x, 8)
        np.testing.assert_allclose(ms["fw_nll"][0], m["fw_nll"][i], rtol=1e-5, atol=1e-5)
    assert not np.allclose(m["fw_nll"][0], m["fw_nll"][1])


def test_batch_size_at_least_n_is_full_batch(tiny_config):
    x = np.asarray(aj.load_dataset("moons", n_train=64, n_test=10)[0])
    runs = []
    for bs in (None, 64, 1000):
        tr = aj.Trainer(tiny_config.replace(method="nf", batch_size=bs), 2)
        state, m = tr.run(tr.init([0]), x, 3)
        runs.append((jax.tree.leaves(state), m["fw_nll"]))
    for leaves, nll in runs[1:]:
        np.testing.assert_array_equal(nll, runs[0][1])
        for a, b in zip(leaves, runs[0][0]):
            np.testing.assert_array_equal(a, b)


def _eqns(jaxpr):
    """Every equation of a jaxpr, recursing into sub-jaxprs (jit, scan, while, cond, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else [p]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


@pytest.mark.parametrize("method", ["nf", "adasym"])
def test_chunk_does_no_work_of_size_n(tiny_config, method):
    n = 5003  # no model or batch dimension is this size
    tr = aj.Trainer(tiny_config.replace(method=method, batch_size=16), 2)
    x = jnp.zeros((n, 2), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda s, xx: tr.chunk(4, n)(s, xx, None))(tr.init([0, 1]), x).jaxpr
    eqns = list(_eqns(jaxpr))
    assert any(e.primitive.name == "scan" for e in eqns)
    assert not [e for e in eqns if e.primitive.name == "sort"]
    sized_n = [e.primitive.name for e in eqns for v in e.outvars if n in getattr(v.aval, "shape", ())]
    assert not sized_n, sized_n
