"""``evaluate``, ``sample`` and ``plot`` refuse to replace an existing output unless
``--overwrite`` is given, as ``train`` does (issue 12: nothing lost, nothing surprising); the
refusal comes before the run is loaded, so nothing is compiled for it."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from adasym_jax import cli

from cli_helpers import TINY, one_line_error, train_tiny_run  # noqa: E402,F401

pytestmark = pytest.mark.slow  # trains a run through the command line

REFUSAL = "exists; pass --overwrite to replace it"




@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = train_tiny_run(tmp_path_factory.mktemp("overwrite") / "run", plots=True)
    assert (out / "density.png").is_file() and (out / "curves.png").is_file()
    return out


@pytest.fixture
def no_run_loaded(monkeypatch):
    """Fail the test if the command gets as far as loading (and compiling) the run."""

    def refuse(*args, **kwargs):
        raise AssertionError("the run was loaded")

    monkeypatch.setattr(cli, "_load_run", refuse)


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "plot"])
def test_every_writing_command_has_the_same_overwrite_flag(command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flag = next(a for a in sub._actions if "--overwrite" in a.option_strings)
    assert isinstance(flag, argparse._StoreTrueAction) and flag.help


@pytest.mark.parametrize("out_name, written", [("ev.npz", "ev.npz"), ("ev", "ev.npz")])
def test_evaluate_refuses_an_existing_output(run_dir, tmp_path, capsys, no_run_loaded, out_name, written):
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    (tmp_path / written).write_bytes(b"keep me")
    code = cli.main(["evaluate", "--run", str(run_dir), "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / out_name)])
    err = one_line_error(capsys, code)
    assert err == f"adasym: error: {tmp_path / written} {REFUSAL}"
    assert (tmp_path / written).read_bytes() == b"keep me"


def test_sample_refuses_an_existing_output(run_dir, tmp_path, capsys, no_run_loaded):
    (tmp_path / "s.npy").write_bytes(b"keep me")
    code = cli.main(["sample", "--run", str(run_dir), "--num", "3", "--out", str(tmp_path / "s.npy")])
    assert REFUSAL in one_line_error(capsys, code)
    assert (tmp_path / "s.npy").read_bytes() == b"keep me"


def test_the_refusal_comes_before_the_run_is_read(tmp_path, capsys):
    (tmp_path / "s.npy").write_bytes(b"keep me")
    code = cli.main(["sample", "--run", str(tmp_path / "no_such_run"), "--num", "3", "--out", str(tmp_path / "s.npy")])
    assert REFUSAL in one_line_error(capsys, code)  # not "no such run folder": nothing was read


def test_evaluate_and_sample_replace_with_overwrite(run_dir, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    for name in ("ev.npz", "s.npy"):
        (tmp_path / name).write_bytes(b"old")
    ev = ["evaluate", "--run", str(run_dir), "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "ev.npz"), "--overwrite"]
    assert cli.main(ev) == 0
    with np.load(tmp_path / "ev.npz") as z:
        assert z["log_p"].shape == (2, 3)
    assert cli.main(["sample", "--run", str(run_dir), "--num", "3", "--out", str(tmp_path / "s.npy"), "--overwrite"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (2, 3, 2)


def test_overwrite_does_not_replace_a_folder(run_dir, tmp_path, capsys):
    (tmp_path / "s.npy").mkdir()
    code = cli.main(["sample", "--run", str(run_dir), "--num", "3", "--out", str(tmp_path / "s.npy"), "--overwrite"])
    assert "is a folder" in one_line_error(capsys, code)


def test_plot_into_the_run_folder_redraws_its_own_figures(run_dir, tmp_path):
    """The default --out is the run folder: redrawing the figures the run itself wrote needs no
    --overwrite (README's `adasym plot --run DIR`)."""
    import shutil

    copy = tmp_path / "own"
    shutil.copytree(run_dir, copy)
    (copy / "curves.png").write_bytes(b"old")
    assert cli.main(["plot", "--run", str(copy)]) == 0
    assert (copy / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_any_figure_it_would_replace(run_dir, tmp_path, capsys, no_run_loaded):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "notes.txt").write_text("other files are no concern")
    (out / "curves.png").write_bytes(b"keep me")
    code = cli.main(["plot", "--run", str(run_dir), "--out", str(out)])
    assert f"{out / 'curves.png'} {REFUSAL}" in one_line_error(capsys, code)
    assert (out / "curves.png").read_bytes() == b"keep me" and not (out / "density.png").exists()


def test_plot_with_overwrite_replaces_the_figures(run_dir, tmp_path):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "curves.png").write_bytes(b"old")
    assert cli.main(["plot", "--run", str(run_dir), "--out", str(out), "--overwrite"]) == 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", [
    ["sbi", "--task", "two_moons", "--seeds", "1"],
    ["latent", "--dataset", "digits", "--seeds", "1"],
])
def test_sbi_and_latent_refuse_a_non_empty_out_before_training(command, tmp_path, capsys, monkeypatch):
    import adasym_jax.runner as runner

    monkeypatch.setattr(runner.Trainer, "__init__", lambda *a, **k: pytest.fail("trained despite the refusal"))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("a user's file")
    code = cli.main([*command, "--out", str(out)])
    assert one_line_error(capsys, code) == f"adasym: error: {out} already exists and is not empty; pass --overwrite to replace it"
    assert (out / "notes.txt").read_text() == "a user's file"
