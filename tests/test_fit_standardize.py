"""``aj.fit(standardize=...)``: data outside the splines' range are standardized (and it says
so), test NLLs come back in data units; data inside the range train exactly as before."""

import warnings

import jax
import numpy as np
import pytest

import adasym_jax as aj
from adasym_jax.runner import choose_standardization


def _ring(n, seed, center=(5.0, 5.0), radius=3.0):
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    r = radius + 0.2 * rng.standard_normal(n)
    return (np.stack([np.cos(angle), np.sin(angle)], 1) * r[:, None] + np.asarray(center)).astype(np.float32)


def _ours(record):
    return [w for w in record if issubclass(w.category, UserWarning) and str(w.message).startswith("fit:")]


@pytest.fixture(scope="module")
def ring_runs(tiny_config):
    cfg = tiny_config.replace(method="nf", lr_flow=3e-3)
    train, test = _ring(400, 0), _ring(300, 1)
    kw = dict(test_data=test, config=cfg, seeds=2, num_steps=40, eval_every=20, progress=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        auto = aj.fit(train, **kw)
    with warnings.catch_warnings(record=True) as record_raw:
        warnings.simplefilter("always")
        raw = aj.fit(train, standardize=False, **kw)
    return train, test, auto, _ours(record), raw, _ours(record_raw)


def test_ring_outside_the_range_is_standardized_and_says_so_once(ring_runs):
    train, _, auto, said, _, said_raw = ring_runs
    assert auto.standardization is not None
    expected = aj.Standardization.fit(train)
    np.testing.assert_allclose(auto.standardization.mean, expected.mean, rtol=1e-6)
    np.testing.assert_allclose(auto.standardization.std, expected.std, rtol=1e-6)
    assert len(said) == 1 and "standardizing" in str(said[0].message), [str(w.message) for w in said]
    assert said_raw == []  # standardize=False is the user's choice: nothing to say


def test_reported_test_nll_is_in_data_units(ring_runs):
    _, test, auto, _, _, _ = ring_runs
    std, tr, state = auto.standardization, auto.trainer, auto.state
    z = np.asarray(std.apply(test), np.float32)
    # log p_x(x) = log p_z(z) - Σ log std, by hand from the returned model
    log_pz = jax.vmap(lambda p: tr.flow.apply({"params": p}, z, method="log_prob"))(state.flow_params)
    nll_p = -np.mean(np.asarray(log_pz), axis=1) + np.sum(np.log(std.std.astype(np.float64)))
    np.testing.assert_allclose(auto.last_test_nll_p, nll_p, rtol=1e-5, atol=1e-5)
    # q̃ = f/T - log ζ̂ in standardized coordinates (ζ̂ as reported), then the same Jacobian
    f = jax.vmap(lambda p, s: tr.ebm.apply({"params": p, "spectral": s}, z))(state.ebm_params, state.ebm_stats)
    nll_q = -np.mean(np.asarray(f) - auto.evals["log_zeta"][:, -1:], axis=1) + std.log_det
    np.testing.assert_allclose(auto.evals["test_nll_q"][:, -1], nll_q, rtol=1e-5, atol=1e-5)


def test_standardizing_beats_raw_data_outside_the_range(ring_runs):
    # the ring at (5, 5) mostly lies where the flow is the identity: raw training cannot fit
    # it; both NLLs are in data units, so they compare directly
    _, _, auto, _, raw, _ = ring_runs
    assert raw.standardization is None
    assert np.all(auto.last_test_nll_p < raw.last_test_nll_p - 5.0), (auto.last_test_nll_p, raw.last_test_nll_p)


def test_data_inside_the_range_trains_exactly_as_before(tiny_config):
    train, test = aj.load_dataset("moons", n_train=128, n_test=100)
    kw = dict(test_data=test, config=tiny_config.replace(method="nf"), seeds=2, num_steps=6, eval_every=3, progress=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        auto = aj.fit(train, **kw)
    raw = aj.fit(train, standardize=False, **kw)
    assert auto.standardization is None and _ours(record) == []
    for k in raw.evals:
        np.testing.assert_array_equal(auto.evals[k], raw.evals[k])
    for k in raw.history:
        np.testing.assert_array_equal(auto.history[k], raw.history[k])
    for a, b in zip(jax.tree.leaves(auto.state), jax.tree.leaves(raw.state)):
        np.testing.assert_array_equal(a, b)


def test_auto_decisions_and_the_partly_outside_warning():
    rng = np.random.default_rng(0)
    inside = rng.normal(0, 1, (500, 2))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert choose_standardization("auto", inside, 5.0) is None
        assert _ours(record) == []
        # a few outliers beyond the bound: not enough to standardize, but said
        outliers = np.concatenate([inside, [[6.0, 0.0], [0.0, -7.0]]])
        assert choose_standardization("auto", outliers, 5.0) is None
        assert len(_ours(record)) == 1 and "outside the splines' range" in str(_ours(record)[0].message)
    # a tighter bound makes the same data standardized; True / False / an instance force it
    with pytest.warns(UserWarning, match="standardizing"):
        assert choose_standardization("auto", inside, 2.0) is not None
    assert choose_standardization(False, inside + 100, 5.0) is None
    assert choose_standardization(True, inside, 5.0) is not None
    given = aj.Standardization.fit(inside)
    assert choose_standardization(given, inside + 100, 5.0) is given


@pytest.mark.parametrize(
    "value, message",
    [("yes", "standardize must be"), (None, "standardize must be"), (aj.Standardization(np.zeros(3), np.ones(3)), "has dim 3")],
)
def test_bad_standardize_is_a_one_line_error_before_any_compile(tiny_config, value, message):
    data = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    with pytest.raises(ValueError, match=message) as err:
        aj.fit(data, config=tiny_config, seeds=1, num_steps=1, standardize=value, progress=False)
    assert "\n" not in str(err.value)


def test_metrics_of_a_self_standardized_fit_add_the_log_det_once(tiny_config):
    """metrics_from_fit on a fit that standardized its own data: the test NLL stays in data
    units (the log-det is not added a second time) and the train block is labelled."""
    import warnings

    from adasym_jax.results import metrics_from_fit

    rng = np.random.default_rng(0)
    t = rng.uniform(0, 2 * np.pi, 300)
    ring = np.stack([5 + 3 * np.cos(t), 5 + 3 * np.sin(t)], 1).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = aj.fit(ring[:200], test_data=ring[200:], config=tiny_config.replace(method="nf"), seeds=1, num_steps=5, eval_every=5, progress=False)
    assert res.standardization is not None
    m = metrics_from_fit(res)
    np.testing.assert_allclose(m["last_test_nll_p"], res.evals["test_nll_p"][:, -1])
    assert m["standardization_log_det"] == pytest.approx(float(res.standardization.log_det))
    assert m["train_units"].startswith("standardized")
