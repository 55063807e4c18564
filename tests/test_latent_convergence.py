"""Latent runs trained to convergence (``train_on_latents(validation_fraction=, patience=)``,
``adasym latent --patience``): the kept parameters are each seed's best-validation state, the
stopping epoch is patience evaluations after the best, and the run folder records it all.
Tiny NF in float32 at init-scale parameters; the independent truth is the validation NLL
recomputed from the returned state."""

import json

import numpy as np
import pytest

from adasym_jax.cli import main
from adasym_jax.config import TrainConfig
from adasym_jax.latent.run import Recipe, summarize, train_on_latents
from adasym_jax.runner import validation_split

# batch 4: an epoch is 9 steps of the 36 training rows (10 if it were counted on all 40)
TINY = TrainConfig(method="nf", num_transforms=1, num_bins=4, flow_hidden=(16,), ebm_blocks=0, ebm_hidden=8,
                   num_zeta_samples=16, eval_zeta_samples=64, lr_flow=3e-2, batch_size=4)
PATIENCE, CAP, PER_EPOCH = 2, 150, 9


@pytest.fixture(scope="module")
def converged():
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)  # 36 training rows overfit fast at LR 3e-2
    run = train_on_latents(x, x[:8], config=TINY, recipe=Recipe(warm_start=False), seeds=[0, 1], epochs=CAP,
                           validation_fraction=0.1, patience=PATIENCE)
    return x, run


def test_kept_state_is_each_seeds_best_validation_state(converged):
    x, run = converged
    val = x[validation_split(len(x), 0.1)[1]]
    recomputed = -np.asarray(run.trainer.log_prob(run.state, val), np.float64).mean(axis=1)
    np.testing.assert_allclose(recomputed, np.nanmin(run.val_curve, axis=1), rtol=0, atol=1e-4)
    for s in range(2):
        assert run.best_epoch[s] == run.eval_epochs[int(np.nanargmin(run.val_curve[s]))]


def test_seeds_stop_patience_evaluations_after_their_best(converged):
    _, run = converged
    assert np.all(run.stopped_epoch < CAP), "the tiny flow should overfit 36 points well before the cap"
    np.testing.assert_array_equal(run.stopped_epoch - run.best_epoch, PATIENCE)


def test_epochs_count_the_training_rows_only(converged):
    _, run = converged
    assert run.steps % PER_EPOCH == 0 and run.eval_epochs == list(range(1, run.steps // PER_EPOCH + 1))


def test_summary_reports_values_at_the_kept_state(converged):
    x, run = converged
    kept = -np.asarray(run.trainer.log_prob(run.state, x[:8]), np.float64).mean(axis=1)  # the test NLL of the returned state
    np.testing.assert_allclose(summarize(run)["test_nll_p"]["at_best_val"], kept, rtol=0, atol=1e-4)


def test_a_validation_split_without_patience_is_refused():
    x = np.zeros((40, 2), np.float32)
    with pytest.raises(ValueError, match="give patience too"):
        train_on_latents(x, x[:8], config=TINY, recipe=Recipe(warm_start=False), seeds=1, epochs=1, validation_fraction=0.1)


@pytest.mark.filterwarnings("ignore:the autoencoder has not learned")
def test_cli_records_early_stopping(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "imgs.npy", rng.uniform(0, 255, (48, 8, 8, 1)).astype(np.uint8))
    out = tmp_path / "run"
    argv = ["latent", "--images", str(tmp_path / "imgs.npy"), "--latent-dim", "3", "--method", "nf", "--seeds", "1",
            "--out", str(out), "--epochs", "4", "--ae-epochs", "1", "--ae-batch", "16", "--patience", "1",
            "--validation-fraction", "0.2", "--quiet", "--set", "num_transforms=1", "num_bins=4", "flow_hidden=8",
            "ebm_blocks=0", "ebm_hidden=8", "num_zeta_samples=16", "batch_size=16", "eval_zeta_samples=64"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    es = m["early_stopping"]
    assert es["patience"] == 1 and es["validation_fraction"] == 0.2
    assert 1 <= es["best_epoch"][0] <= es["stopped_epoch"][0] <= 4 and len(es["val_curve"][0]) == len(m["eval_epochs"])
    assert json.loads((out / "config.json").read_text())["run"]["early_stopping"]["patience"] == 1
    assert "early stopping (patience 1" in stdout


@pytest.mark.parametrize("extra, match", [(["--validation-fraction", "0.2"], "give --patience too"),
                                          (["--patience", "0"], "patience must be")])
def test_bad_convergence_flags_one_line_before_anything_is_written(tmp_path, capsys, extra, match):
    np.save(tmp_path / "imgs.npy", np.zeros((20, 8, 8, 1), np.float32))
    code = main(["latent", "--images", str(tmp_path / "imgs.npy"), "--out", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("adasym: error:") and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
