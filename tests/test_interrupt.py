"""Ctrl-C keeps the run: `adasym train` interrupted by SIGINT leaves a resumable folder with the
last finished chunk, and `--resume` from it continues bitwise (issue 12 item 1)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from adasym_jax import cli
from adasym_jax.results import load_run
from adasym_jax.runner import FitInterrupted, fit

TINY = [
    "--set", "ebm_blocks=1", "ebm_hidden=8", "num_transforms=2", "num_bins=4", "flow_hidden=8",
    "num_zeta_samples=32", "eval_zeta_samples=64",
]  # fmt: skip
SMALL_DATA = ["--dataset", "moons", "--n-train", "64", "--n-test", "32"]
EVERY = 5
FAR = 1_000_000  # a target the interrupted run cannot reach


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _wait_for(proc: subprocess.Popen, buf: list[str], pattern: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if pattern in "".join(buf):
            return True
        time.sleep(0.05)
    return pattern in "".join(buf)


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so Python installs its Ctrl-C handler.
    A test run started in the background of a non-interactive shell (as CI may start it) inherits
    SIGINT ignored, and a child that ignores it would never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_saves_the_last_finished_chunk_and_resume_is_bitwise(tmp_path):
    out = tmp_path / "run"
    argv = ["train", *SMALL_DATA, "--seeds", "2", "--eval-every", str(EVERY), "--steps", str(FAR), "--out", str(out), "--no-plots", *TINY]
    proc = subprocess.Popen(
        [sys.executable, "-m", "adasym_jax.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_default_sigint,
    )
    err_buf: list[str] = []
    reader = threading.Thread(target=lambda: err_buf.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    try:
        # the progress bar shows a test NLL once the first chunk has finished
        assert _wait_for(proc, err_buf, "test_nll_p=", 90), "".join(err_buf)[-2000:]
        proc.send_signal(signal.SIGINT)
        # wait, not communicate(): communicate would read stderr too and could take the
        # interrupt line away from the reader thread
        proc.wait(timeout=180)  # a loaded 2-core CI machine can take a while to save and exit
        proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    stderr = "".join(err_buf)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    # the message may follow the bar's last \r-rendered frame when stderr is a pipe
    lines = re.findall(r"adasym: interrupted[^\r\n]*", stderr)
    assert len(lines) == 1, stderr[-2000:]
    m = re.fullmatch(r"adasym: interrupted; saved step (\d+) of (\d+) in (.+); continue with: (.+)", lines[0])
    assert m, lines[0]
    saved, target, command = int(m.group(1)), int(m.group(2)), m.group(4)
    assert target == FAR and saved >= EVERY and saved % EVERY == 0  # a chunk boundary
    assert shlex.split(command) == ["adasym", "train", "--out", str(out), "--resume", "--steps", str(FAR)]

    # A resumable folder: checkpoint, config and metrics of exactly the saved step.
    assert json.loads((out / "checkpoint.json").read_text())["step"] == saved
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_step"] == saved
    assert metrics["eval_steps"] == list(range(EVERY, saved + 1, EVERY))
    assert json.loads((out / "config.json").read_text())["run"]["steps"] == FAR

    # The printed command (with a reachable target) continues it; the result equals an
    # uninterrupted run of the same length, bit for bit.
    end = saved + 2 * EVERY
    resume = shlex.split(command)[1:]
    resume[resume.index("--steps") + 1] = str(end)
    assert cli.main([*resume, "--quiet", "--no-plots"]) == 0
    ref = tmp_path / "ref"
    ref_argv = [a if a != str(out) else str(ref) for a in argv]
    ref_argv[ref_argv.index("--steps") + 1] = str(end)
    assert cli.main([*ref_argv, "--quiet"]) == 0

    got = json.loads((out / "metrics.json").read_text())
    want = json.loads((ref / "metrics.json").read_text())
    assert got["eval_steps"] == want["eval_steps"] == list(range(EVERY, end + 1, EVERY))
    for key in ("test_nll_p", "test_nll_q", "log_zeta", "lambdas", "train", "best_test_nll_p", "last_test_nll_p"):
        assert got[key] == want[key], key
    assert _leaves_equal(load_run(out).state, load_run(ref).state)
    cfg = json.loads((out / "config.json").read_text())["run"]
    assert cfg["command"].startswith("adasym train --dataset moons")  # the original command is kept
    assert len(cfg["resumed_commands"]) == 1 and "--resume" in cfg["resumed_commands"][0]


def test_interrupt_before_the_first_chunk_leaves_nothing(tmp_path, monkeypatch, capsys):
    import adasym_jax.runner as runner

    def interrupted_fit(data, *, state, **kwargs):
        raise FitInterrupted("interrupted", state, 0, None)

    monkeypatch.setattr(runner, "fit", interrupted_fit)
    out = tmp_path / "r"
    code = cli.main(["train", *SMALL_DATA, "--steps", "4", "--seeds", "2", "--out", str(out), "--quiet", *TINY])
    assert code == 130
    err = capsys.readouterr().err.strip()
    assert err == "adasym: interrupted before the first chunk finished; nothing was saved"
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_fit_args():
    from adasym_jax import TrainConfig
    from adasym_jax.data import load_dataset

    x, t = load_dataset("moons", 64, 32)
    cfg = TrainConfig(num_transforms=2, num_bins=4, flow_hidden=(8,), ebm_hidden=8, ebm_blocks=1, num_zeta_samples=32, eval_zeta_samples=64)
    return x, dict(config=cfg, seeds=2, eval_every=2, test_data=t, progress=False)


def test_fit_turns_ctrl_c_into_fit_interrupted_with_the_last_finished_chunk(tiny_fit_args):
    x, kw = tiny_fit_args
    seen = []

    def on_eval(result):
        seen.append(list(result.eval_steps))
        if len(seen) == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, between chunks

    with pytest.raises(FitInterrupted) as info:
        fit(x, num_steps=8, on_eval=on_eval, **kw)
    err = info.value
    assert isinstance(err, KeyboardInterrupt)  # uncaught, it still stops a program
    assert seen == [[2], [2, 4]]
    assert err.step == 4 and err.result.eval_steps == [2, 4]
    assert int(np.asarray(err.last_good_state.step)[0]) == 4
    assert err.result.history["fw_nll"].shape == (2, 4) and err.result.evals["test_nll_p"].shape == (2, 2)
    # continuing from the carried state is the uninterrupted run
    rest = fit(x, num_steps=4, state=err.last_good_state, **kw)
    full = fit(x, num_steps=8, **kw)
    np.testing.assert_array_equal(rest.evals["test_nll_p"], full.evals["test_nll_p"][:, 2:])
    assert _leaves_equal(rest.state, full.state)
