"""The one training loop (``runner.fit``) serving every experiment: a seed that goes
non-finite is frozen at its last good state while the others train on (``on_nonfinite="freeze"``),
evaluation callbacks, conditional data with a validation split, a custom pure step, and the
one dual step's ζ sources (fresh samples, per condition, the D.3 cache)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax import objective as obj
from adasym_jax.batch import Batch
from adasym_jax.runner import NonFiniteError, Trainer, fit
from adasym_jax.state import init_state
from adasym_jax.train import make_dual_step, make_train_step
from adasym_jax.zeta_sources import cached_samples, fresh_samples

BAD_FROM_STEP = 3  # the poisoned seed's metrics turn NaN from this step on


def _data(n=32, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, 2)) * 0.5).astype(np.float32)


def _poisoned_trainer(config):
    """Trainer whose step reports NaN for seeds with λ_fw > 1 from step BAD_FROM_STEP + 1 on."""
    tr = Trainer(config, 2)
    base = make_train_step(config, tr.flow, tr.ebm)

    def step(state, batch):
        new, m = base(state, batch)
        poisoned = (state.lambdas["fw"] > 1.0) & (state.step >= BAD_FROM_STEP)
        m = dict(m, fw_nll=jnp.where(poisoned, jnp.nan, m["fw_nll"]))
        return new, m

    tr.step = step
    return tr


@pytest.fixture(scope="module")
def nf_config(tiny_config):
    return dataclasses.replace(tiny_config, method="nf", lr_flow=1e-2)


def _lambdas(values):
    return {k: jnp.asarray(values, jnp.float32) for k in obj.MULTIPLIER_NAMES}


def test_freeze_keeps_a_diverged_seed_at_its_last_good_state(nf_config):
    tr = _poisoned_trainer(nf_config)
    state0 = tr.init([0, 1], lambdas=_lambdas([0.5, 2.0]))
    seen = []
    r = fit(
        _data(), config=nf_config, seeds=2, num_steps=8, eval_every=2, state=state0, trainer=tr,
        progress=False, standardize=False, on_nonfinite="freeze", on_eval=seen.append,
    )
    # seed 1 went NaN at step 4 (its first poisoned step), in the chunk of steps 3-4
    assert list(r.diverged_step) == [-1, BAD_FROM_STEP + 1]
    assert r.diverged_quantity == [None, "fw_nll"]
    # its state is the one after step 2 (the last good chunk), the other seed trained on
    after_two = seen[0].state
    for a, b in zip(jax.tree.leaves(r.state.flow_params), jax.tree.leaves(after_two.flow_params)):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[1])
        assert not np.array_equal(np.asarray(a)[0], np.asarray(b)[0])
    # its evaluations are NaN from the chunk where it diverged, finite before; seed 0 finite
    nll = r.evals["test_nll_p"]
    assert np.all(np.isfinite(nll[0])) and np.isfinite(nll[1, 0]) and np.all(np.isnan(nll[1, 1:]))
    # its training metrics after the divergence chunk are NaN (it did not train)
    assert np.all(np.isnan(r.history["fw_nll"][1, 4:])) and np.all(np.isfinite(r.history["fw_nll"][0]))
    # seed 0 is exactly what it is when trained alone (the freeze left it alone)
    alone = fit(
        _data(), config=nf_config, seeds=[0], num_steps=8, eval_every=2, state=jax.tree.map(lambda a: a[:1], state0),
        trainer=tr, progress=False, standardize=False,
    )
    for a, b in zip(jax.tree.leaves(r.state.flow_params), jax.tree.leaves(alone.state.flow_params)):
        # float32, 2 seeds vmapped against 1: XLA may sum in another order, and Adam turns a rounding
        # difference in a near-zero gradient into up to a step (seen: 4.7e-5 relative on one weight after
        # 8 steps; 3.6e-5 absolute with the unrolled layer scan); a seed frozen by mistake would lack 6
        # Adam steps of size ≈ lr = 1e-2 on nearly every weight, 10-60x this tolerance
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[0], rtol=0, atol=1e-3)


def test_raise_names_the_quantity_step_and_keeps_the_last_good_state(nf_config):
    tr = _poisoned_trainer(nf_config)
    state0 = tr.init([0, 1], lambdas=_lambdas([0.5, 2.0]))
    with pytest.raises(NonFiniteError, match=r"fw_nll became NaN or infinite at step 4") as err:
        fit(_data(), config=nf_config, seeds=2, num_steps=8, eval_every=2, state=state0, trainer=tr, progress=False, standardize=False)
    assert err.value.step == BAD_FROM_STEP + 1 and int(np.asarray(err.value.last_good_state.step)[0]) == 2


def test_evaluators_add_per_seed_quantities(nf_config):
    calls = []

    def mean_x(state, standardization):
        calls.append(standardization)
        return {"step_seen": np.full(2, float(np.asarray(state.step)[0]))}

    with pytest.warns(UserWarning, match="standardizing"):
        r = fit(_data() + 8.0, config=nf_config, seeds=2, num_steps=4, eval_every=2, progress=False, evaluators=[mean_x])
    np.testing.assert_array_equal(r.evals["step_seen"], [[2.0, 4.0], [2.0, 4.0]])
    assert calls[0] is r.standardization and r.standardization is not None  # the data left the range
    with pytest.raises(ValueError, match="already evaluated"):
        fit(_data(), config=nf_config, seeds=1, num_steps=2, eval_every=2, progress=False,
            evaluators=[lambda s, _: {"test_nll_p": np.zeros(1)}])


def test_conditional_fit_validates_on_held_out_pairs(tiny_config):
    cfg = dataclasses.replace(tiny_config, method="nf", context_dim=1, lr_flow=1e-2)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(60, 1)).astype(np.float32)
    beta = (u + 0.1 * rng.normal(size=(60, 2))).astype(np.float32)
    r = fit(beta, context=u, config=cfg, seeds=2, num_steps=6, eval_every=3, progress=False, validation_fraction=0.2, standardize=False)
    from adasym_jax.runner import validation_split

    _, val_rows = validation_split(60, 0.2)
    want = -np.asarray(r.trainer.log_prob(r.state, beta[val_rows], u[val_rows]), np.float64).mean(axis=1)
    np.testing.assert_allclose(r.val_curve[:, -1], want, rtol=1e-5)
    assert "test_nll_p" not in r.evals  # no test pairs given: nothing but the validation curve
    with pytest.raises(ValueError, match="context"):
        fit(beta, config=cfg, seeds=1, num_steps=2, progress=False)


def test_fresh_source_is_the_default_and_cached_source_reads_the_cache(tiny_config):
    """make_dual_step's default ζ source for a plain config is fresh_samples (same step
    output bitwise), and with zeta_refresh_every > 1 the step's log ζ̂ comes from the cache."""
    cfg = tiny_config
    tr = Trainer(cfg, 2)
    s = init_state(cfg, tr.flow, tr.ebm, jax.random.PRNGKey(0), 2)
    x = jnp.asarray(_data())
    a, ma = jax.jit(make_dual_step(cfg, tr.flow, tr.ebm))(s, Batch(x))
    b, mb = jax.jit(make_dual_step(cfg, tr.flow, tr.ebm, fresh_samples(cfg, tr.flow)))(s, Batch(x))
    assert all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    cached = cfg.replace(zeta_refresh_every=10)
    sc = init_state(cached, tr.flow, tr.ebm, jax.random.PRNGKey(0), 2)
    _, mc = jax.jit(make_dual_step(cached, tr.flow, tr.ebm))(sc, Batch(x))
    log_q = tr.ebm.apply({"params": sc.ebm_params, "spectral": sc.ebm_stats}, sc.zeta_cache["y"], update_stats=True, mutable=["spectral"])[0]
    assert float(mc["log_zeta"]) == pytest.approx(float(obj.log_zeta_estimate(log_q, sc.zeta_cache["log_p"])), abs=1e-5)
    with pytest.raises(ValueError, match="zeta_cache"):
        cached_samples(cached, tr.flow)(s, Batch(x))  # a state without a cache


def test_epochs_visit_every_row_once_with_the_zeta_cache(tiny_config):
    """A ζ-cache refresh in the middle of an epoch must not change the epoch's row order: the
    refresh takes the step's key, the epoch key stays (minibatches of 4 of 12 rows, a refresh
    every 2 steps, epochs of 3 steps)."""
    cfg = dataclasses.replace(tiny_config, batch_size=4, zeta_refresh_every=2, num_zeta_samples=8)
    tr = Trainer(cfg, 2)

    def rows_step(state, batch):  # records which rows the step saw (column 0 holds the row index)
        return state.replace(step=state.step + 1), {"rows": batch.x[:, 0]}

    tr.step = rows_step
    x = jnp.stack([jnp.arange(12.0), jnp.zeros(12)], axis=1)
    _, m = tr.chunk(9, 12)(tr.init([0, 1]), x, None)
    rows = np.asarray(m["rows"]).astype(int)  # (seeds, steps, batch)
    for s in range(2):
        for epoch in range(3):
            assert sorted(rows[s, 3 * epoch : 3 * epoch + 3].ravel()) == list(range(12))


def test_a_single_context_is_broadcast_to_every_row(tiny_config):
    cfg = dataclasses.replace(tiny_config, method="nf", context_dim=1)
    beta = _data(20)
    r = fit(beta, context=np.array([0.5], np.float32), config=cfg, seeds=1, num_steps=2, eval_every=2, progress=False,
            validation_fraction=0.2, standardize=False)
    assert r.val_curve.shape == (1, 1) and np.isfinite(r.val_curve).all()
