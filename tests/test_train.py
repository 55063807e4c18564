"""Train step and runner: vmap = one by one, determinism, learning, checkpoints, sharding, errors."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adasym_jax as aj
from adasym_jax.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def data():
    train, test = aj.load_dataset("moons", n_train=256, n_test=1000)
    return train, test


@pytest.fixture(scope="module")
def trainer(tiny_config):
    return aj.Trainer(tiny_config, 2)


def _allclose_tree(a, b, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=atol)


def test_vmapped_seeds_equal_seeds_one_at_a_time(trainer, data):
    x = data[0]
    state = trainer.init([3, 8])
    vm_state, vm_metrics = trainer.run(state, x, 3)
    for i, seed in enumerate([3, 8]):
        single = trainer.init([seed])
        assert all(np.array_equal(np.asarray(a)[i], np.asarray(b)[0]) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(single)))
        # the same seed through the plain (unvmapped) jitted step
        s = jax.tree.map(lambda a: a[0], single)
        step = jax.jit(trainer.step)
        for t in range(3):
            s, m = step(s, x)
            np.testing.assert_allclose(m["fw_nll"], vm_metrics["fw_nll"][i, t], rtol=1e-4, atol=1e-4)
        _allclose_tree(jax.tree.map(lambda a: a[i], vm_state.flow_params), s.flow_params, 1e-4)
        _allclose_tree(jax.tree.map(lambda a: a[i], vm_state.lambdas), s.lambdas, 1e-4)


def test_same_seed_same_result_and_seeds_differ(trainer, data):
    a, ma = trainer.run(trainer.init([0, 1]), data[0], 3)
    b, mb = trainer.run(trainer.init([0, 1]), data[0], 3)
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k])
    assert not np.allclose(ma["fw_nll"][0], ma["fw_nll"][1])


def test_dual_training_lowers_test_nll_and_keeps_lambdas_feasible(tiny_config, data):
    train, test = data
    # With the paper's rates (Adam on λ keeps λ_rv ≈ λ_fw early, ψ learns at 1e-4) the dual
    # needs ~1500 steps of the D.1 model to fit moons; 300 tiny steps need faster rates.
    config = tiny_config.replace(lr_flow=3e-3, lr_ebm=1e-3, lr_dual_zeta=1e-2)
    res = aj.fit(train, test_data=test, config=config, seeds=2, num_steps=300, eval_every=100, progress=False)
    nll = res.evals["test_nll_p"]
    assert nll.shape == (2, 3) and res.eval_steps == [100, 200, 300]
    first = res.trainer.evaluate(res.trainer.init(2), test)["test_nll_p"]
    assert np.all(nll[:, -1] < first - 0.3), (first, nll)
    for k in ("lambda_fw", "lambda_rv", "lambda_prx", "lambda_zeta_u", "lambda_zeta_l"):
        assert np.all(res.history[k] >= 0.0)
    assert np.all(np.isfinite(res.history["log_zeta"]))
    assert res.steps_per_second > 0 and res.compile_seconds > 0


@pytest.mark.parametrize("method", ["nf", "weighted"])
def test_baseline_steps_share_the_state(tiny_config, data, method):
    cfg = tiny_config.replace(method=method, weights=(2.0, 0.5, 1.0))
    tr = aj.Trainer(cfg, 2)
    s0 = tr.init(1)
    s1, m = tr.run(s0, data[0], 20)
    assert np.all(np.diff(m["fw_nll"][0][::5]) < 0.5)
    moved = lambda a, b: any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    assert moved(s0.flow_params, s1.flow_params)
    assert moved(s0.key, s1.key)  # the PRNG stream advances (minibatches depend on it)
    if method == "nf":
        assert not moved(s0.ebm_params, s1.ebm_params)  # ψ untouched by maximum likelihood
    else:
        assert moved(s0.ebm_params, s1.ebm_params)
        np.testing.assert_allclose(s1.lambdas["fw"], 2.0)  # P-W keeps its weights
        np.testing.assert_allclose(s1.lambdas["rv"], 0.5)


def test_minibatches_change_from_step_to_step(tiny_config, data):
    # NF with a minibatch: the per-step loss is measured on that step's batch, so a frozen batch
    # would make consecutive losses come from the same 8 points; compare with full-batch NLLs.
    cfg = tiny_config.replace(method="nf", batch_size=8, lr_flow=1e-12)
    tr = aj.Trainer(cfg, 2)
    _, m = tr.run(tr.init(1), data[0], 6)
    assert len(np.unique(np.round(m["fw_nll"][0], 5))) == 6


def test_pathwise_and_importance_options_run(tiny_config, data):
    cfg = tiny_config.replace(reverse_grad="pathwise", zeta_grad="importance", num_reverse_samples=64, batch_size=128)
    tr = aj.Trainer(cfg, 2)
    s, m = tr.run(tr.init(1), data[0], 10)
    assert all(np.all(np.isfinite(v)) for v in m.values())
    assert int(s.step[0]) == 10


def test_checkpoint_round_trip(tmp_path, trainer, tiny_config, data):
    state, _ = trainer.run(trainer.init([4, 5]), data[0], 3)
    save_checkpoint(tmp_path / "ck", state, tiny_config, 2, [4, 5])
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert meta["seeds"] == [4, 5] and meta["step"] == 3
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # training continues identically from the loaded state
    s1, m1 = trainer.run(state, data[0], 3)
    s2, m2 = trainer.run(jax.tree.map(jnp.asarray, loaded), data[0], 3)
    np.testing.assert_array_equal(m1["fw_nll"], m2["fw_nll"])


def test_nonfinite_training_stops_with_the_quantity_and_step(tiny_config, data):
    cfg = tiny_config.replace(lr_ebm=1e4, lr_flow=1e4, adam_b2=0.0)
    with pytest.raises(aj.NonFiniteError) as err:
        aj.fit(data[0], config=cfg, seeds=1, num_steps=200, eval_every=20, progress=False)
    e = err.value
    assert "step" in str(e) and e.quantity in str(e)
    assert all(np.all(np.isfinite(np.asarray(a, np.float64))) for a in jax.tree.leaves(e.last_good_state))


def test_bad_input_raises_before_compiling(tiny_config, data):
    train = data[0]
    with pytest.raises(ValueError, match="NaN"):
        aj.fit(np.where(np.arange(512).reshape(256, 2) == 7, np.nan, train), config=tiny_config, seeds=1, num_steps=1, progress=False)
    with pytest.raises(ValueError, match="empty|too small"):
        aj.fit(np.zeros((0, 2), np.float32), config=tiny_config, seeds=1, num_steps=1, progress=False)
    with pytest.raises(ValueError, match="columns"):
        aj.fit(train, test_data=np.zeros((5, 3), np.float32), config=tiny_config, seeds=1, num_steps=1, progress=False)
    with pytest.raises(ValueError, match="shape"):
        aj.fit(train[:, 0], config=tiny_config, seeds=1, num_steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        tiny_config.replace(method="gan")
    with pytest.raises(ValueError, match="duplicate"):
        aj.Trainer(tiny_config, 2).init([1, 1])
    with pytest.raises(ValueError, match="context"):
        aj.Trainer(tiny_config, 2).run(aj.Trainer(tiny_config, 2).init(1), train, 1, context=np.zeros((256, 2)))


def test_seed_axis_shards_over_forced_host_devices(tmp_path):
    script = textwrap.dedent(
        """
        import jax, numpy as np
        import adasym_jax as aj
        assert jax.device_count() == 2, jax.devices()
        cfg = aj.TrainConfig(num_transforms=2, num_bins=4, flow_hidden=(8,), ebm_hidden=8, ebm_blocks=1, num_zeta_samples=64)
        tr = aj.Trainer(cfg, 2)
        x, _ = aj.load_dataset("moons", n_train=128, n_test=10)
        state = tr.init(2)
        sharded = aj.shard_seeds(state)
        assert len(sharded.flow_opt[0].mu["layers"]["kernel_0"].sharding.device_set) == 2
        s1, m1 = tr.run(state, x, 3)
        s2, m2 = tr.run(sharded, x, 3)
        assert len(s2.step.sharding.device_set) == 2
        np.testing.assert_allclose(m1["fw_nll"], m2["fw_nll"], rtol=1e-5, atol=1e-5)
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]
