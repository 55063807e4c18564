"""A latent run folder round-trips through ``adasym sample --run`` in data units (issue 11).

Before the one standardization type, ``adasym latent`` saved its latent statistics under
``extra["latent_mean"/"latent_std"]``, which ``load_run`` did not read: ``adasym sample --run``
returned *standardized* latents (mean ≈ 0, std ≈ 1). Now the run saves a
:class:`~adasym_jax.checkpoint.Standardization`, and folders written the old way are read too.
"""

import json

import numpy as np
import pytest

from adasym_jax import cli
from adasym_jax.checkpoint import META_FILE, Standardization, read_standardization

TINY = ["--set", "num_transforms=1", "num_bins=4", "flow_hidden=8", "ebm_blocks=0", "ebm_hidden=8",
        "num_zeta_samples=16", "batch_size=16", "eval_zeta_samples=64"]


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("latent_folder")
    rng = np.random.default_rng(0)
    imgs = (rng.uniform(0, 255, (64, 8, 8, 1))).astype(np.uint8)
    np.save(d / "imgs.npy", imgs)
    out = d / "run"
    argv = ["latent", "--images", str(d / "imgs.npy"), "--latent-dim", "3", "--method", "nf", "--seeds", "1",
            "--out", str(out), "--epochs", "1", "--ae-epochs", "1", "--ae-batch", "16", "--no-warm-start",
            "--quiet", *TINY]
    assert cli.main(argv) == 0
    return out


def _training_latent_stats(run_dir):
    ae = json.loads((run_dir / "autoencoder.json").read_text())
    return np.asarray(ae["latent_mean"], np.float64), np.asarray(ae["latent_std"], np.float64)


def _sample(run_dir, tmp_path, num=4000):
    out = tmp_path / "s.npy"
    assert cli.main(["sample", "--run", str(run_dir), "--num", str(num), "--out", str(out)]) == 0
    return np.load(out)[0].astype(np.float64)


def test_sample_returns_latents_in_autoencoder_units(latent_run, tmp_path, capsys):
    mean, std = _training_latent_stats(latent_run)
    # the check below only tells the two answers apart if the training latents are not ~N(0, 1)
    assert np.max(np.abs(mean) + np.abs(np.log(std))) > 0.3, (mean, std)
    s = _sample(latent_run, tmp_path)
    assert s.shape == (4000, 3)
    # a flow trained one epoch is near its N(0, I) base in standardized units; in data units
    # that is mean ≈ the latents' mean and std ≈ the latents' std (loosely: barely trained)
    np.testing.assert_allclose(s.mean(0), mean, atol=0.5 * std.max() + 0.05)
    ratio = s.std(0) / std
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    # and they are not the standardized latents, which would match (0, 1) instead
    to_data = np.sum(np.abs(s.mean(0) - mean) / std + np.abs(np.log(s.std(0) / std)))
    to_unit = np.sum(np.abs(s.mean(0)) / std + np.abs(np.log(s.std(0))))
    assert to_data < to_unit, (to_data, to_unit)


def test_the_checkpoint_holds_one_standardization(latent_run):
    meta = json.loads((latent_run / META_FILE).read_text())
    mean, std = _training_latent_stats(latent_run)
    st = read_standardization(meta)
    assert isinstance(st, Standardization)
    np.testing.assert_allclose(st.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.std, std, rtol=1e-5, atol=1e-6)
    assert meta["extra"]["latent_space"] == "autoencoder"
    assert st.log_det == pytest.approx(float(np.sum(np.log(std))), rel=1e-5)  # + Σ log std, the one convention


def test_folder_written_before_the_one_type_still_loads_with_its_standardization(latent_run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(latent_run, old)
    meta = json.loads((old / META_FILE).read_text())
    del meta["extra"]["standardization"], meta["extra"]["latent_space"]  # the pre-issue-11 layout
    (old / META_FILE).write_text(json.dumps(meta))
    from adasym_jax.results import load_run

    run = load_run(old)
    new = load_run(latent_run)
    np.testing.assert_allclose(run.standardizer.mean, new.standardizer.mean)
    np.testing.assert_allclose(run.standardizer.std, new.standardizer.std)
    mean, std = _training_latent_stats(old)
    s = _sample(old, tmp_path)
    ratio = s.std(0) / std
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_sbi_settings_key_scale_is_read_as_std():
    # adasym sbi's run settings stored {"mean", "scale"} before issue 11, now {"mean", "std"}
    a = Standardization.from_dict({"mean": [1.0, 2.0], "scale": [3.0, 4.0]})
    b = Standardization.from_dict({"mean": [1.0, 2.0], "std": [3.0, 4.0]})
    np.testing.assert_array_equal(a.std, b.std)
    assert a.to_dict() == {"mean": [1.0, 2.0], "std": [3.0, 4.0]}


def test_dual_run_with_cached_zeta_reloads(tmp_path):
    """A dual latent run with D.3's cached ζ (--zeta-every > 1) saves its ζ cache with the state
    and the config that describes it, so ``adasym sample`` loads the folder."""
    rng = np.random.default_rng(1)
    np.save(tmp_path / "imgs.npy", rng.uniform(0, 255, (64, 8, 8, 1)).astype(np.uint8))
    out = tmp_path / "run"
    argv = ["latent", "--images", str(tmp_path / "imgs.npy"), "--latent-dim", "3", "--method", "adasym", "--seeds", "1",
            "--out", str(out), "--epochs", "1", "--ae-epochs", "1", "--ae-batch", "16", "--no-warm-start",
            "--zeta-every", "2", "--no-temperature", "--quiet", *TINY]
    assert cli.main(argv) == 0
    meta = json.loads((out / META_FILE).read_text())
    assert meta["config"]["zeta_refresh_every"] == 2
    assert json.loads((out / "config.json").read_text())["config"]["zeta_refresh_every"] == 2
    assert json.loads((out / "metrics.json").read_text())["diverged"] == [False]
    s = _sample(out, tmp_path, num=100)
    assert s.shape == (100, 3) and np.all(np.isfinite(s))
