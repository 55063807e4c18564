"""WGAN-GP step and the vmapped P-W weight grid (adasym_jax.baselines)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax.baselines import (
    PW_WEIGHTS,
    fit_pw_grid,
    init_pw_grid,
    pw_grid_lambdas,
    pw_grid_members,
)
from adasym_jax.config import TrainConfig
from adasym_jax.data import load_dataset
from adasym_jax.runner import Trainer

TINY = dict(
    num_transforms=2,
    flow_hidden=(8,),
    num_bins=4,
    ebm_blocks=1,
    ebm_hidden=8,
    num_zeta_samples=32,
    eval_zeta_samples=64,
)



@pytest.fixture(scope="module")
def data():
    x, _ = load_dataset("moons", 48, 16)
    return x


@pytest.fixture(scope="module")
def wgan_run(data):
    cfg = TrainConfig(method="wgan", critic_steps=2, **TINY)
    trainer = Trainer(cfg, 2)
    state0 = trainer.init(2)
    state1, metrics = trainer.run(state0, data, 3)
    return trainer, state0, state1, metrics


def _max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_wgan_step_changes_flow_and_critic_and_keeps_lambdas(wgan_run):
    # θ only gets the generator loss −mean f_ψ(g_θ(z)) (fw_nll is monitoring), so a moved θ
    # shows the gradient went through the sampling path.
    _, s0, s1, metrics = wgan_run
    assert _max_abs_diff(s0.flow_params, s1.flow_params) > 0
    assert _max_abs_diff(s0.ebm_params, s1.ebm_params) > 0
    assert _max_abs_diff(s0.lambdas, s1.lambdas) == 0
    np.testing.assert_array_equal(np.asarray(s1.step), [3, 3])
    for name in ("wasserstein", "gradient_penalty", "generator_loss", "fw_nll"):
        assert metrics[name].shape == (2, 3)
        assert np.all(np.isfinite(metrics[name]))
    assert np.all(metrics["gradient_penalty"] >= 0)


def test_pw_grid_members_and_lambdas():
    members = pw_grid_members([4, 9])
    assert len(members) == 2 * len(PW_WEIGHTS) ** 2
    pairs = {(g.w_fw, g.w_rv) for g in members if g.seed == 9}
    assert pairs == {(a, b) for a in PW_WEIGHTS for b in PW_WEIGHTS}
    lam = pw_grid_lambdas(members)
    for i, g in enumerate(members):
        assert (lam["fw"][i], lam["rv"][i], lam["prx"][i]) == (np.float32(g.w_fw), np.float32(g.w_rv), 1.0)
    assert not lam["zeta_u"].any() and not lam["zeta_l"].any()
    with pytest.raises(ValueError):
        pw_grid_members(2, weights=[1.0, -1.0])


def test_pw_grid_needs_weighted_method():
    with pytest.raises(ValueError, match="weighted"):
        init_pw_grid(Trainer(TrainConfig(**TINY), 2), pw_grid_members(1, (1.0,)))


@pytest.fixture(scope="module")
def grid_result(data):
    cfg = TrainConfig(method="weighted", **TINY)
    trainer = Trainer(cfg, 2)
    members = pw_grid_members([0, 1], weights=(0.5, 2.0))
    state = init_pw_grid(trainer, members)
    state, hist1 = trainer.run(state, data, 2)
    state, hist2 = trainer.run(state, data, 2)
    history = {k: np.concatenate([hist1[k], hist2[k]], axis=1) for k in hist1}
    return cfg, state, history, members


def test_fit_pw_grid_checks_data_first():
    with pytest.raises(ValueError):
        fit_pw_grid(np.zeros((1, 2), np.float32), config=TrainConfig(method="weighted", **TINY), num_steps=1)


def test_pw_grid_program_keeps_each_members_lambdas(grid_result):
    _, state, history, members = grid_result
    assert len(members) == 8
    lam = state.lambdas
    np.testing.assert_allclose(np.asarray(lam["fw"]), [g.w_fw for g in members])
    np.testing.assert_allclose(np.asarray(lam["rv"]), [g.w_rv for g in members])
    np.testing.assert_allclose(np.asarray(lam["prx"]), 1.0)
    # the weights recorded at every step are the member's own
    np.testing.assert_allclose(history["lambda_rv"], np.repeat([[g.w_rv] for g in members], 4, axis=1))
    assert np.all(np.isfinite(history["fw_nll"]))


def test_pw_grid_member_matches_a_single_run(grid_result, data):
    cfg, grid_state, _, members = grid_result
    i = 6  # seed 1, (w_fw, w_rv) = (2.0, 0.5)
    g = members[i]
    assert (g.seed, g.w_fw, g.w_rv) == (1, 2.0, 0.5)
    single_cfg = cfg.replace(weights=(g.w_fw, g.w_rv, g.w_prx))
    trainer = Trainer(single_cfg, 2)
    state, _ = trainer.run(trainer.init([g.seed]), data, 2)
    state, _ = trainer.run(state, data, 2)
    member = jax.tree.map(lambda a: a[i : i + 1], grid_state)
    assert _max_abs_diff(state.flow_params, member.flow_params) < 1e-4
    assert _max_abs_diff(state.ebm_params, member.ebm_params) < 1e-4
    # a different member of the same seed did move differently
    other = jax.tree.map(lambda a: a[i - 1 : i], grid_state)
    assert _max_abs_diff(member.flow_params, other.flow_params) > 1e-4
