"""A run to convergence that is interrupted and resumed is the run that was never interrupted:
the validation bookkeeping (patience counters, stopped seeds, best losses) and each seed's best
state go with the checkpoint (``runner.EarlyStopping``; ``adasym train`` saves them)."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from adasym_jax import cli, results
from adasym_jax.checkpoint import load_checkpoint
from adasym_jax.runner import FitInterrupted, fit

PATIENCE, CAP = 2, 120


def _data(n=40, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, 2)) * 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def nf_config(tiny_config):
    # as in test_early_stopping: the three seeds overfit 32 points and stop at different times
    return dataclasses.replace(tiny_config, method="nf", lr_flow=1e-2, batch_size=8)


def _leaves(state):
    return [np.asarray(v) for v in jax.tree.leaves(state)]


def test_fit_continues_the_bookkeeping(nf_config):
    kw = dict(config=nf_config, seeds=3, validation_fraction=0.2, patience=PATIENCE, progress=False, standardize=False)
    whole = fit(_data(), num_steps=CAP, **kw)
    assert len(set(whole.stopped_step.tolist())) > 1  # seeds stop at different steps

    def interrupt_late(r):
        # after one seed has stopped and before the last has: the freeze must survive the resume
        if r.early_stopping is not None and 0 < int(r.early_stopping.active.sum()) < 3:
            raise KeyboardInterrupt

    with pytest.raises(FitInterrupted) as err:
        fit(_data(), num_steps=CAP, on_eval=interrupt_late, **kw)
    part = err.value.result
    assert not part.early_stopping.active.all()
    rest = fit(_data(), num_steps=CAP - err.value.step, state=err.value.last_good_state, early_stopping=part.early_stopping, **kw)
    np.testing.assert_array_equal(rest.stopped_step, whole.stopped_step)
    np.testing.assert_array_equal(rest.best_step, whole.best_step)
    np.testing.assert_allclose(rest.best_val, whole.best_val, rtol=1e-6)
    for a, b in zip(_leaves(rest.state.flow_params), _leaves(whole.state.flow_params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="patience"):
        fit(_data(), num_steps=4, early_stopping=part.early_stopping, **{**kw, "patience": None})


def test_adasym_train_resumes_a_run_to_convergence(tmp_path, monkeypatch):
    x = _data(200, seed=3)
    np.save(tmp_path / "x.npy", x)
    argv = ["train", "--data", str(tmp_path / "x.npy"), "--method", "nf", "--seeds", "3", "--steps", "300",
            "--patience", "2", "--eval-every", "10", "--quiet", "--no-plots", "--standardize", "off",
            "--set", "num_transforms=2", "num_bins=4", "flow_hidden=16,16", "ebm_blocks=1", "ebm_hidden=16",
            "lr_flow=1e-2", "batch_size=16"]
    assert cli.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    real = results.metrics_from_fit
    calls = {"cut": False}

    def interrupt_once_a_seed_stopped(part, *a, **k):
        # Ctrl-C while a periodic checkpoint is written after one seed has stopped and before the
        # last has (a fresh bookkeeping would then train the stopped seed again)
        es = part.early_stopping
        if not calls["cut"] and es is not None and 0 < int(es.active.sum()) < 3:
            calls["cut"] = True
            raise KeyboardInterrupt
        return real(part, *a, **k)

    monkeypatch.setattr(results, "metrics_from_fit", interrupt_once_a_seed_stopped)
    out = tmp_path / "cut"
    assert cli.main([*argv, "--checkpoint-every", "10", "--out", str(out)]) == 130
    monkeypatch.setattr(results, "metrics_from_fit", real)
    assert calls["cut"] and len(set(whole["stopping_step"])) > 1
    meta = json.loads((out / "checkpoint.json").read_text())
    assert "early_stopping" in meta["extra"] and (out / cli.BEST_DIR / "checkpoint.json").is_file()
    assert cli.main(["train", "--resume", "--out", str(out), "--quiet", "--no-plots"]) == 0
    cut = json.loads((out / "metrics.json").read_text())
    assert cut["stopping_step"] == whole["stopping_step"]
    np.testing.assert_allclose(cut["best_val_nll"], whole["best_val_nll"], rtol=1e-6)
    a, _ = load_checkpoint(out)
    b, _ = load_checkpoint(tmp_path / "whole")
    for u, v in zip(_leaves(a.flow_params), _leaves(b.flow_params)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    assert not (out / cli.BEST_DIR).exists()  # a finished run keeps only its (best) state
