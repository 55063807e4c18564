"""Damaged run folders and files give one 'adasym: error: ...' line naming the file and exit
code 1, never a traceback, and fail before anything is compiled (issue 12: nothing lost,
nothing surprising)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from adasym_jax import cli

from cli_helpers import TINY, one_line_error, train_tiny_run  # noqa: E402,F401

pytestmark = pytest.mark.slow  # trains a run through the command line



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = train_tiny_run(tmp_path_factory.mktemp("malformed") / "run", plots=False)
    return out


@pytest.fixture
def nothing_compiled(monkeypatch):
    """Fail the test if the command builds the run's programs (``Trainer.init`` is the first)."""
    from adasym_jax.runner import Trainer

    def refuse(*args, **kwargs):
        raise AssertionError("a program was compiled")

    monkeypatch.setattr(Trainer, "init", refuse)




def _meta(d, **changes):
    meta = json.loads((d / "checkpoint.json").read_text())
    for k, v in changes.items():
        if v is _DROP:
            del meta[k]
        else:
            meta[k] = v
    (d / "checkpoint.json").write_text(json.dumps(meta))


_DROP = object()


def _state(d, keep=None):
    meta = json.loads((d / "checkpoint.json").read_text())
    path = d / meta["state_file"]
    if keep is not None:
        path.write_bytes(path.read_bytes()[:keep])
    else:  # garbage of the right size and checksum: only the msgpack decoder can tell
        data = np.random.default_rng(0).bytes(meta["state_bytes"])
        path.write_bytes(data)
        _meta(d, state_sha256=hashlib.sha256(data).hexdigest())


def _config_bins(d):
    meta = json.loads((d / "checkpoint.json").read_text())
    meta["config"]["num_bins"] = "four"
    (d / "checkpoint.json").write_text(json.dumps(meta))


# name -> (damage, the part of the message that names the problem)
DAMAGE = {
    "state_truncated": (lambda d: _state(d, keep=100), "truncated"),
    "state_garbage": (lambda d: _state(d), "state file is truncated or corrupt"),
    "state_missing": (lambda d: [p.unlink() for p in d.glob("state*.msgpack")], "msgpack is missing"),
    "meta_truncated": (lambda d: (d / "checkpoint.json").write_text('{"format_version": 2, "con'), "checkpoint.json"),
    "meta_no_dim": (lambda d: _meta(d, dim=_DROP), "lacks the key 'dim'"),
    "meta_seeds_int": (lambda d: _meta(d, seeds=2), "checkpoint.json: 'seeds' must be"),
    "meta_step_null": (lambda d: _meta(d, step=None), "checkpoint.json: 'step' must be"),
    "meta_extra_list": (lambda d: _meta(d, extra=[1]), "checkpoint.json: 'extra' must be"),
    "meta_config_type": (_config_bins, "unreadable run"),
    "config_garbage": (lambda d: (d / "config.json").write_text("{not json"), "config.json: unreadable (JSONDecodeError"),
    "config_binary": (lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00"), "config.json: unreadable (UnicodeDecodeError"),
    "config_run_list": (lambda d: (d / "config.json").write_text('{"run": [1, 2]}'), "config.json: 'run' is not a JSON object"),
}


@pytest.fixture
def damaged(run_dir, tmp_path):
    def make(name):
        copy = tmp_path / name
        shutil.copytree(run_dir, copy)
        DAMAGE[name][0](copy)
        return copy

    return make


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_sample_from_a_damaged_run_is_one_line(name, damaged, tmp_path, capsys, nothing_compiled):
    d = damaged(name)
    code = cli.main(["sample", "--run", str(d), "--num", "2", "--out", str(tmp_path / "s.npy")])
    err = one_line_error(capsys, code)
    assert DAMAGE[name][1] in err and str(d) in err
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("name", ["state_garbage", "meta_no_dim", "config_garbage"])
@pytest.mark.parametrize("command", ["evaluate", "plot", "resume"])
def test_every_command_on_a_damaged_run_is_one_line(command, name, damaged, tmp_path, capsys, nothing_compiled):
    d = damaged(name)
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    argv = {
        "evaluate": ["evaluate", "--run", str(d), "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "e.npz")],
        "plot": ["plot", "--run", str(d), "--out", str(tmp_path / "figs")],
        "resume": ["train", "--out", str(d), "--resume", "--steps", "6", "--quiet", "--no-plots"],
    }[command]
    err = one_line_error(capsys, cli.main(argv))
    assert DAMAGE[name][1] in err
    assert not (tmp_path / "e.npz").exists() and not (tmp_path / "figs").exists()


METRICS = {
    "garbage": ("{not json", "metrics.json: unreadable (JSONDecodeError"),
    "missing_keys": (json.dumps({"method": "adasym"}), "metrics.json lacks the entry 'eval_steps'"),
    "wrong_type": (json.dumps({"eval_steps": "2,4", "test_nll_p": 1, "test_nll_q": 1, "log_zeta": 1}), "'eval_steps' is not a list"),
    "ragged": (json.dumps({"eval_steps": [2, 4], "test_nll_p": [[1.0], [1.0, 2.0]], "test_nll_q": [[1.0, 2.0]] * 2,
                           "log_zeta": [[0.0, 0.0]] * 2}), "test_nll_p is not a seeds × evaluations table"),  # fmt: skip
    "lambdas_list": (json.dumps({"eval_steps": [2], "test_nll_p": [[1.0]] * 2, "test_nll_q": [[1.0]] * 2,
                                 "log_zeta": [[0.0]] * 2, "lambdas": [1]}), "'lambdas' is not a dict"),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("command", ["plot", "resume"])
def test_a_malformed_metrics_file_is_one_line(command, name, run_dir, tmp_path, capsys, nothing_compiled):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    text, fragment = METRICS[name]
    (d / "metrics.json").write_text(text)
    before = (d / "checkpoint.json").read_text()
    argv = (["plot", "--run", str(d), "--out", str(tmp_path / "figs")] if command == "plot"
            else ["train", "--out", str(d), "--resume", "--steps", "6", "--quiet", "--no-plots"])  # fmt: skip
    err = one_line_error(capsys, cli.main(argv))
    assert "metrics.json" in err and fragment in err
    assert (d / "checkpoint.json").read_text() == before  # resume trained nothing


def test_resume_checks_the_earlier_curves_against_the_seeds(run_dir, tmp_path, capsys, nothing_compiled):
    # a valid metrics.json of another run (one seed): the resumed curves could not continue it
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    m = json.loads((d / "metrics.json").read_text())
    m["test_nll_p"] = m["test_nll_p"][:1]
    (d / "metrics.json").write_text(json.dumps(m))
    err = one_line_error(capsys, cli.main(["train", "--out", str(d), "--resume", "--steps", "6", "--quiet"]))
    assert "metrics.json: test_nll_p has shape 1 × 2, expected 2 × 2" in err


@pytest.mark.parametrize("setting, value", [("steps", "6"), ("eval_every", None), ("patience", "3"), ("dataset", 5)])
def test_resume_checks_the_run_settings(setting, value, run_dir, tmp_path, capsys, nothing_compiled):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["run"][setting] = value
    (d / "config.json").write_text(json.dumps(cfg))
    err = one_line_error(capsys, cli.main(["train", "--out", str(d), "--resume", "--quiet"]))
    assert f"config.json: the run setting {setting!r} must be" in err


@pytest.mark.parametrize(
    "preview, fragment",
    [(b"not numpy", "not a .npy/.npz file"), (np.zeros(5), "must be 2-D"), (np.zeros((0, 2)), "0 rows"),
     (np.zeros((4, 3)), "3 columns, expected 2")],
)  # fmt: skip
def test_plot_with_a_damaged_data_preview_is_one_line(preview, fragment, run_dir, tmp_path, capsys, nothing_compiled):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    if isinstance(preview, bytes):
        (d / "data_preview.npy").write_bytes(preview)
    else:
        np.save(d / "data_preview.npy", preview)
    err = one_line_error(capsys, cli.main(["plot", "--run", str(d), "--out", str(tmp_path / "figs")]))
    assert "data_preview.npy" in err and fragment in err


# -- the last-resort handler in main --------------------------------------------------------
@pytest.mark.parametrize("error", [KeyError("eval_steps"), TypeError("'int' object is not iterable"), EOFError()])
def test_an_unexpected_error_from_a_malformed_file_is_one_line(error, monkeypatch, capsys):
    def broken(args):
        raise error

    monkeypatch.setattr(cli, "cmd_sample", broken)
    monkeypatch.delenv("ADASYM_DEBUG", raising=False)
    err = one_line_error(capsys, cli.main(["sample", "--run", "r", "--num", "1", "--out", "s.npy"]))
    assert err.startswith(f"adasym: error: {type(error).__name__}")
    assert err.endswith(" (set ADASYM_DEBUG=1 for the traceback)")


def test_adasym_debug_shows_the_traceback(monkeypatch):
    def broken(args):
        raise KeyError("eval_steps")

    monkeypatch.setattr(cli, "cmd_sample", broken)
    monkeypatch.setenv("ADASYM_DEBUG", "1")
    with pytest.raises(KeyError, match="eval_steps"):
        cli.main(["sample", "--run", "r", "--num", "1", "--out", "s.npy"])


def test_ctrl_c_is_still_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_sample", interrupted)
    assert cli.main(["sample", "--run", "r", "--num", "1", "--out", "s.npy"]) == 130
    assert capsys.readouterr().err.strip() == "adasym: interrupted"
