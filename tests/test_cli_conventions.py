"""One convention across `adasym` subcommands: errors as 'adasym: error: ...' (exit 2 for
usage, 1 for the library), help text on every option, exit codes in ``--help``, the same
``--seeds`` format in ``train`` and ``sbi``, ``--method`` as a choice, rounded numbers."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from adasym_jax import cli


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _error(capsys, code: int, expected_code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected_code, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("adasym: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "plot", "sbi", "latent"])
def test_every_option_has_help(command):
    parser = _subparsers()[command]
    missing = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
    assert missing == []


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--out", "x", "--method", "gan"], "invalid choice: 'gan'"),
        (["sample", "--run", "x"], "the following arguments are required"),
        (["plot", "--run", "x", "--bogus"], "unrecognized arguments: --bogus"),
        (["sample", "--run", "x", "--num", "many", "--out", "s.npy"], "invalid int value"),
        (["nosuchcommand"], "invalid choice"),
        (["latent", "--out", "x"], "one of the arguments --images --dataset is required"),
        (["sbi", "--out", "x", "--method", "wgan"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_adasym_line_with_exit_2(capsys, argv, fragment):
    err = _error(capsys, cli.main(argv), 2)
    assert fragment in err
    assert "--help" in err  # says where to look


def test_usage_error_names_the_subcommand(capsys):
    err = _error(capsys, cli.main(["sample", "--run", "x"]), 2)
    assert err.startswith("adasym: error: sample: ")


def test_usage_error_raised_by_a_handler_has_the_same_prefix(tmp_path, capsys):
    err = _error(capsys, cli.main(["train", "--out", str(tmp_path / "r"), "--resume", "--overwrite"]), 2)
    assert err == "adasym: error: --resume and --overwrite exclude each other"


def test_library_errors_exit_1(tmp_path, capsys):
    err = _error(capsys, cli.main(["plot", "--run", str(tmp_path / "absent")]), 1)
    assert "no such run folder" in err


@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["sbi", "--help"], ["latent", "--help"]])
def test_help_documents_exit_codes(capsys, argv):
    assert cli.main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 success; 1 bad input" in text
    assert "2 bad usage" in text and "3 training diverged" in text


def test_train_method_choices_are_the_config_methods():
    from adasym_jax.config import METHODS

    train = _subparsers()["train"]
    method = next(a for a in train._actions if "--method" in a.option_strings)
    assert tuple(method.choices) == METHODS


# -- sbi --seeds ----------------------------------------------------------------------------


class _Stop(Exception):
    pass


@pytest.mark.parametrize("text, seeds", [("3", [0, 1, 2]), ("2,7", [2, 7]), ("5,", [5])])
def test_sbi_seeds_take_the_train_format(monkeypatch, tmp_path, text, seeds):
    import adasym_jax.sbi.run as sbi_run

    seen = {}

    def fake_train_sbi(*args, **kwargs):
        seen["seeds"] = kwargs["seeds"]
        raise _Stop

    monkeypatch.setattr(sbi_run, "train_sbi", fake_train_sbi)
    with pytest.raises(_Stop):
        cli.main(["sbi", "--task", "gaussian_mixture", "--seeds", text, "--out", str(tmp_path / "r")])
    assert seen["seeds"] == seeds
    assert seeds == cli.parse_seeds(text)  # the same as `adasym train --seeds`


@pytest.mark.parametrize("text", ["1,1", "x", "-2", "0"])
def test_sbi_bad_seeds_are_one_line(capsys, tmp_path, text):
    code = cli.main(["sbi", "--task", "gaussian_mixture", f"--seeds={text}", "--out", str(tmp_path / "r")])
    assert "seed" in _error(capsys, code, 1)
    assert not (tmp_path / "r").exists()


def test_sbi_prints_rounded_numbers_and_trains_listed_seeds(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    tiny = ["num_transforms=2", "num_bins=4", "flow_hidden=16", "ebm_hidden=16", "ebm_blocks=1", "film_layers=1", "batch_size=100"]
    code = cli.main([
        "sbi", "--task", "gaussian_mixture", "--num-simulations", "300", "--method", "nf", "--seeds", "0,3",
        "--steps", "4", "--eval-every", "2", "--c2st-every", "1", "--no-mlp-c2st", "--out", str(out), "--set", *tiny,
    ])
    stdout = capsys.readouterr().out
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["seeds"] == [0, 3]
    progress = [line for line in stdout.splitlines() if "step" in line and "C2ST" in line]
    assert len(progress) == 2
    for line in stdout.splitlines():
        if "sample with:" in line:
            continue
        long_numbers = re.findall(r"\d+\.\d{5,}", line)
        assert long_numbers == [], line
