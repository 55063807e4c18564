"""Training to convergence in ``fit``: validation split, per-seed early stopping inside one
vmapped program, restoration of each seed's best state, and the fixed-length path unchanged."""

import dataclasses

import jax
import numpy as np
import pytest

from adasym_jax import runner
from adasym_jax.results import metrics_from_fit
from adasym_jax.runner import Trainer, fit, validation_split

PATIENCE = 2
CAP = 120


def _data(n=40, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, 2)) * 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def nf_config(tiny_config):
    # minibatches of 8 of 32 training rows (an epoch = 4 steps) and a high lr: the flow
    # overfits 32 points within a few epochs, and the three seeds stop at different times
    return dataclasses.replace(tiny_config, method="nf", lr_flow=1e-2, batch_size=8)


@pytest.fixture(scope="module")
def stopped(nf_config):
    partials = []
    result = fit(
        _data(), config=nf_config, seeds=3, num_steps=CAP, validation_fraction=0.2, patience=PATIENCE,
        progress=False, standardize=False, on_eval=partials.append,
    )
    return result, partials


def _val_nll(result, state):
    val = _data()[validation_split(40, 0.2)[1]]
    return -np.asarray(result.trainer.log_prob(state, val), np.float64).mean(axis=1)


def _seed_leaves(state, s, skip_step=True):
    tree = state.replace(step=0) if skip_step else state
    return [np.asarray(leaf)[s] if np.ndim(leaf) else leaf for leaf in jax.tree.leaves(tree)]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_stops_after_patience(stopped):
    result, _ = stopped
    per_epoch = result.steps_per_epoch
    assert per_epoch == 4 and np.diff(result.eval_steps).tolist() == [4] * (len(result.eval_steps) - 1)
    stop, best = result.stopped_step, result.best_step
    assert len(set(stop.tolist())) > 1, "the seeds should stop at different times"
    assert stop.max() < CAP and result.eval_steps[-1] == stop.max()  # ended when all had stopped
    np.testing.assert_array_equal(stop, best + PATIENCE * per_epoch)
    np.testing.assert_array_equal(result.stopped_epoch, stop / per_epoch)
    curve = result.val_curve
    assert curve.shape == (3, len(result.eval_steps))
    steps = np.asarray(result.eval_steps)
    for s in range(3):
        seen = steps <= stop[s]
        assert np.all(np.isfinite(curve[s, seen])) and np.all(np.isnan(curve[s, ~seen]))
        # no improvement over the best in the last PATIENCE evaluations
        k = int(np.nonzero(steps == best[s])[0][0])
        assert np.all(curve[s, k + 1 : k + 1 + PATIENCE] >= curve[s, k])
        assert np.all(np.isnan(result.history["fw_nll"][s, stop[s] :]))


def test_restores_each_seeds_best_state(stopped):
    result, partials = stopped
    np.testing.assert_array_equal(_val_nll(result, result.state), result.best_val)
    np.testing.assert_array_equal(result.best_val, np.nanmin(result.val_curve, axis=1))
    assert np.all(np.asarray(result.state.step) == result.eval_steps[-1])  # the clock is the run's
    by_step = {p.eval_steps[-1]: p.state for p in partials}
    for s in range(3):
        assert _same(_seed_leaves(result.state, s), _seed_leaves(by_step[int(result.best_step[s])], s))


def test_stopped_seed_is_frozen_while_others_train(stopped):
    result, partials = stopped
    final = partials[-1].state
    by_step = {p.eval_steps[-1]: p.state for p in partials}
    early = [s for s in range(3) if result.stopped_step[s] < result.eval_steps[-1]]
    late = [s for s in range(3) if result.stopped_step[s] == result.eval_steps[-1]]
    assert early and late
    for s in early:
        at_stop = by_step[int(result.stopped_step[s])]
        assert _same(_seed_leaves(at_stop, s), _seed_leaves(final, s))
    for s in late:
        at = by_step[int(result.stopped_step[early[0]])]
        assert not _same(_seed_leaves(at, s), _seed_leaves(final, s))


def test_metrics_json_contract(stopped):
    result, _ = stopped
    m = metrics_from_fit(result)
    np.testing.assert_array_equal(m["val_nll"], result.val_curve)
    np.testing.assert_array_equal(m["stopping_step"], result.stopped_step)
    np.testing.assert_array_equal(m["stopping_epoch"], result.stopped_epoch)
    np.testing.assert_array_equal(m["best_val_nll"], result.best_val)
    assert m["steps_per_epoch"] == 4
    idx = [result.eval_steps.index(int(b)) for b in result.best_step]
    np.testing.assert_array_equal(m["restored_test_nll_p"], result.evals["test_nll_p"][np.arange(3), idx])


def _manual(trainer, x, seeds, chunks):
    state = trainer.init(seeds)
    for n in chunks:
        state, _ = trainer.run(state, x, n)
    return state


@pytest.mark.parametrize("batch_size", [None, 8])
def test_off_is_bitwise_the_fixed_length_run(tiny_config, batch_size):
    config = dataclasses.replace(tiny_config, method="nf", batch_size=batch_size)
    x = _data()
    kw = dict(config=config, seeds=2, num_steps=7, eval_every=3, progress=False, standardize=False)
    plain = fit(x, **kw)
    off = fit(x, validation_fraction=0.0, patience=None, **kw)
    ref = _manual(Trainer(config, 2), x, 2, [3, 3, 1])
    for a, b, c in zip(jax.tree.leaves(plain.state), jax.tree.leaves(off.state), jax.tree.leaves(ref)):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    for k in plain.history:
        np.testing.assert_array_equal(plain.history[k], off.history[k])
    assert plain.eval_steps == off.eval_steps == [3, 6, 7]
    assert off.val_curve is None and off.stopped_step is None and off.best_val is None


def test_validation_without_patience_monitors_only(tiny_config):
    config = dataclasses.replace(tiny_config, method="nf")
    x = _data()
    result = fit(x, config=config, seeds=2, num_steps=4, eval_every=2, progress=False, standardize=True,
                 validation_fraction=0.25)
    rows, val_rows = validation_split(40, 0.25)
    assert len(val_rows) == 10 and len(np.intersect1d(rows, val_rows)) == 0
    # the statistics come from the training rows only
    np.testing.assert_allclose(np.asarray(result.standardization.mean), x[rows].mean(axis=0), rtol=1e-5)
    assert result.val_curve.shape == (2, 2) and np.all(np.isfinite(result.val_curve))
    assert result.stopped_step is None and result.eval_steps == [2, 4]
    ref = _manual(Trainer(config, 2), np.asarray(result.standardization.apply(x[rows]), np.float32), 2, [2, 2])
    for a, b in zip(jax.tree.leaves(result.state), jax.tree.leaves(ref)):
        assert np.array_equal(a, b)  # the final state, not a restored one


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"validation_fraction": 1.0}, "validation_fraction must be in [0, 1)"),
        ({"validation_fraction": -0.1}, "validation_fraction must be in [0, 1)"),
        ({"validation_fraction": "0.1"}, "validation_fraction must be a number"),
        ({"validation_fraction": 0.1, "patience": 0}, "patience must be None or an integer >= 1"),
        ({"validation_fraction": 0.1, "patience": 2.5}, "patience must be None or an integer >= 1"),
        ({"patience": 3}, "patience needs a validation split"),
        ({"validation_fraction": 0.01}, "leaves 0 validation and 5 training rows"),
        ({"validation_fraction": 0.7}, "leaves 4 validation and 1 training rows"),
    ],
)
def test_bad_values_fail_before_compiling(tiny_config, monkeypatch, kw, message):
    def no_trainer(*a, **k):
        raise AssertionError("built a Trainer")

    monkeypatch.setattr(runner, "Trainer", no_trainer)
    with pytest.raises(ValueError) as err:
        fit(_data(5), config=tiny_config, seeds=1, num_steps=2, progress=False, **kw)
    assert message in str(err.value) and "\n" not in str(err.value)
