"""``plot``, ``evaluate`` and ``sample`` on every kind of run folder (``train``, ``sbi``,
``latent``), into output folders that do not exist yet, with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adasym_jax import cli

TRAIN_TINY = [
    "--set", "ebm_blocks=1", "--set", "ebm_hidden=8", "--set", "num_transforms=2", "--set", "num_bins=4",
    "--set", "flow_hidden=8", "--set", "num_zeta_samples=32", "--set", "eval_zeta_samples=64",
]  # fmt: skip
SBI_TINY = [
    "num_transforms=2", "num_bins=4", "flow_hidden=16", "ebm_hidden=16", "ebm_blocks=1", "film_layers=1",
    "batch_size=100", "lr_dual_zeta=1.0", "eps_zeta=0.1",
]  # fmt: skip
LATENT_TINY = [
    "--set", "num_transforms=1", "--set", "num_bins=4", "--set", "flow_hidden=8", "--set", "ebm_blocks=0",
    "--set", "ebm_hidden=8", "--set", "num_zeta_samples=16", "--set", "batch_size=16", "--set", "eval_zeta_samples=64",
]  # fmt: skip


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("adasym: error:")
    return err


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds") / "train"
    argv = ["train", "--dataset", "moons", "--n-train", "64", "--n-test", "32", "--steps", "4", "--eval-every", "2",
            "--seeds", "2", "--out", str(out), "--quiet", "--no-plots", *TRAIN_TINY]
    assert cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def sbi_run(tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("kinds") / "sbi"
    argv = ["sbi", "--task", "gaussian_mixture", "--num-simulations", "300", "--method", "adasym", "--seeds", "2",
            "--steps", "6", "--eval-every", "3", "--no-mlp-c2st", "--zeta-per-condition", "2", "--out", str(out),
            "--set", *SBI_TINY]
    assert cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("kinds")
    imgs = np.random.default_rng(0).uniform(0, 255, (48, 8, 8, 1)).astype(np.uint8)
    np.save(d / "imgs.npy", imgs)
    out = d / "latent"
    argv = ["latent", "--images", str(d / "imgs.npy"), "--latent-dim", "3", "--method", "nf", "--seeds", "1",
            "--out", str(out), "--epochs", "2", "--ae-epochs", "1", "--ae-batch", "16", "--no-warm-start",
            "--zeta-every", "2", "--quiet", *LATENT_TINY]
    assert cli.main(argv) == 0
    return out


def _png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_train_run_into_new_folder(train_run, tmp_path, capsys):
    out = tmp_path / "figs" / "deeper"
    assert cli.main(["plot", "--run", str(train_run), "--out", str(out)]) == 0
    assert _png(out / "density.png") and _png(out / "curves.png")
    assert f"wrote {out / 'curves.png'}" in capsys.readouterr().out


def test_plot_train_run_without_preview_uses_config_data(train_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(train_run, copy)
    (copy / "data_preview.npy").unlink()
    assert cli.main(["plot", "--run", str(copy), "--out", str(tmp_path / "o")]) == 0
    assert _png(tmp_path / "o" / "density.png")


def test_plot_sbi_run(sbi_run, tmp_path, capsys):
    out = tmp_path / "new"
    code = cli.main(["plot", "--run", str(sbi_run), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    assert _png(out / "curves.png") and _png(out / "posterior.png")
    assert "posterior.png" in captured.out


def test_plot_sbi_run_without_metrics_is_one_line(sbi_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sbi_run, copy)
    (copy / "metrics.json").unlink()
    code = cli.main(["plot", "--run", str(copy), "--out", str(tmp_path / "o")])
    assert "metrics.json" in _one_line_error(capsys, code)
    assert not (tmp_path / "o").exists()


def test_plot_with_broken_metrics_is_one_line(train_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(train_run, copy)
    (copy / "metrics.json").write_text("{not json")
    code = cli.main(["plot", "--run", str(copy), "--out", str(tmp_path / "o")])
    assert "metrics.json" in _one_line_error(capsys, code)
    (copy / "metrics.json").write_text(json.dumps({"method": "adasym"}))
    code = cli.main(["plot", "--run", str(copy), "--out", str(tmp_path / "o")])
    assert "metrics.json" in _one_line_error(capsys, code)


def test_plot_latent_run(latent_run, tmp_path, capsys):
    out = tmp_path / "lat_figs"
    code = cli.main(["plot", "--run", str(latent_run), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _png(out / "curves.png")
    assert "samples.png" in captured.out  # points to the decoded images the run wrote


def test_sample_latent_run_says_it_returns_latents(latent_run, tmp_path, capsys):
    out = tmp_path / "a" / "b" / "s.npy"
    assert cli.main(["sample", "--run", str(latent_run), "--num", "4", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 4, 3)
    assert "not images" in capsys.readouterr().out


def test_evaluate_and_sample_create_the_output_folder(train_run, tmp_path, capsys):
    x = np.random.default_rng(1).normal(size=(10, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ev_out = tmp_path / "not" / "yet" / "ev.npz"
    assert cli.main(["evaluate", "--run", str(train_run), "--data", str(tmp_path / "x.npy"), "--out", str(ev_out)]) == 0
    with np.load(ev_out) as z:
        assert z["log_p"].shape == (2, 10)
    s_out = tmp_path / "fresh" / "s.npy"
    assert cli.main(["sample", "--run", str(train_run), "--num", "3", "--out", str(s_out)]) == 0
    assert np.load(s_out).shape == (2, 3, 2)


def test_sbi_run_on_evaluate_and_sample(sbi_run, tmp_path, capsys):
    np.save(tmp_path / "beta.npy", np.zeros((4, 2), np.float32))
    code = cli.main(["evaluate", "--run", str(sbi_run), "--data", str(tmp_path / "beta.npy"), "--out", str(tmp_path / "e.npz")])
    assert "conditional" in _one_line_error(capsys, code)
    assert not (tmp_path / "e.npz").exists()
    out = tmp_path / "post" / "p.npy"
    assert cli.main(["sample", "--run", str(sbi_run), "--context", "0.5,0.5", "--num", "6", "--out", str(out)]) == 0
    assert np.load(out).shape == (2, 6, 2)


def test_output_under_a_file_is_one_line(train_run, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = cli.main(["sample", "--run", str(train_run), "--num", "3", "--out", str(tmp_path / "afile" / "s.npy")])
    assert "not a folder" in _one_line_error(capsys, code)
    code = cli.main(["plot", "--run", str(train_run), "--out", str(tmp_path / "afile")])
    assert "not a folder" in _one_line_error(capsys, code)
