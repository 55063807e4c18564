"""Shared by the command-line tests: a tiny train run and the one-line-error check."""

from __future__ import annotations

from pathlib import Path

from adasym_jax import cli

# The run of test_cli_run_kinds.train_run (same programs, shared through the compilation cache).
TINY = [
    "--set", "ebm_blocks=1", "ebm_hidden=8", "num_transforms=2", "num_bins=4", "flow_hidden=8",
    "num_zeta_samples=32", "eval_zeta_samples=64",
]  # fmt: skip


def train_tiny_run(out: Path, plots: bool = True) -> Path:
    """``adasym train`` of 4 steps, 2 seeds on 64 moons points into ``out``."""
    argv = ["train", "--dataset", "moons", "--n-train", "64", "--n-test", "32", "--steps", "4", "--eval-every", "2",
            "--seeds", "2", "--out", str(out), "--quiet", *([] if plots else ["--no-plots"]), *TINY]  # fmt: skip
    assert cli.main(argv) == 0
    return out


def one_line_error(capsys, code: int) -> str:
    """The command's stderr, checked to be one ``adasym: error:`` line (exit code 1, no traceback)."""
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("adasym: error: "), err
    return err
