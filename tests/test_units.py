"""One unit everywhere: with standardization, the progress bar, the summary and metrics.json
report test NLLs in the data's units, and metrics.json labels its training block (issue 12
item 4)."""

from __future__ import annotations

import json
import re

import numpy as np

from adasym_jax import cli
from adasym_jax.checkpoint import load_checkpoint, read_metadata, read_standardization
from adasym_jax.config import TrainConfig
from adasym_jax.runner import Trainer

TINY = [
    "--set", "ebm_blocks=1", "ebm_hidden=8", "num_transforms=2", "num_bins=4", "flow_hidden=8",
    "num_zeta_samples=32", "eval_zeta_samples=64",
]  # fmt: skip


def _ring(n: int, seed: int) -> np.ndarray:
    """A ring of radius 3 around (5, 5): far from the origin and wider than the unit box."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 2 * np.pi, n)
    r = 3.0 + 0.1 * rng.normal(size=n)
    return np.stack([5 + r * np.cos(a), 5 + r * np.sin(a)], axis=1).astype(np.float32)


def test_standardized_run_reports_data_units_everywhere(tmp_path, capsys):
    train, test = _ring(200, 0), _ring(100, 1)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    out = tmp_path / "ring"
    code = cli.main([
        "train", "--data", str(tmp_path / "train.npy"), "--test-data", str(tmp_path / "test.npy"),
        "--standardize", "on", "--steps", "6", "--eval-every", "3", "--seeds", "2", "--out", str(out),
        "--no-plots", *TINY,
    ])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())

    # The test NLL computed here from the saved model: flow log-density of the standardized
    # test points, change of variables back to data units.
    meta = read_metadata(out)
    trainer = Trainer(TrainConfig.from_dict(meta["config"]), 2)
    state, meta = load_checkpoint(out, trainer.init(meta["seeds"]))
    std = read_standardization(meta)
    log_det = float(np.sum(np.log(np.asarray(std.std, np.float64))))
    assert log_det > 1.0  # std ≈ 2.1 per axis: a unit mix-up would show
    z = (test - np.asarray(std.mean)) / np.asarray(std.std)
    log_p_data = np.asarray(trainer.log_prob(state, z), np.float64) - log_det  # log p_x = log p_z − Σ log s
    direct = -np.mean(log_p_data, axis=1)
    np.testing.assert_allclose(metrics["last_test_nll_p"], direct, rtol=1e-5, atol=1e-5)
    assert metrics["nll_units"] == "nats per point, data coordinates"

    # The progress bar's last test NLL and the summary's "last" are the same data-unit number.
    bar = re.findall(r"test_nll_p=(-?[\d.]+)", captured.err)
    assert bar, captured.err
    assert float(bar[-1]) == round(float(np.mean(metrics["last_test_nll_p"])), 3)
    summary = re.search(r"test NLL of p_θ \(nats per point, data units\): best \S+ ± \S+, last (\S+)", captured.out)
    assert summary, captured.out
    assert float(summary.group(1)) == round(float(np.mean(metrics["last_test_nll_p"])), 4)

    # The training block stays in model units, and says so.
    assert "standardized" in metrics["train_units"]
    assert abs(metrics["standardization_log_det"] - log_det) < 1e-9


def test_unstandardized_run_labels_its_training_block_as_data_units(tmp_path, capsys):
    out = tmp_path / "moons"
    code = cli.main(["train", "--dataset", "moons", "--n-train", "64", "--n-test", "32", "--steps", "2", "--eval-every", "2",
                     "--seeds", "2", "--out", str(out), "--quiet", "--no-plots", *TINY])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_units"] == "data coordinates (no standardization)"
    assert metrics["standardization_log_det"] == 0.0
