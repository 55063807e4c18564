"""The seed axis past one process (``adasym_jax.distributed``): 4 seeds trained by two local
CPU processes joined by ``jax.distributed`` (2 seeds each, Gloo collectives) against the same 4
seeds in this one process (one CPU device), and Orbax checkpoints that either layout resumes.

What the layouts share exactly: a checkpoint written by one layout restores bit for bit in the
other; both processes gather the same values; a layout resuming its own checkpoint continues
bit for bit as if it had never stopped.

What they share to rounding (``RTOL``, ``ATOL``): the 2-process program is the 4-seed chunk
partitioned by XLA's SPMD partitioner, so each device runs a different HLO module than the
1-process one (2 seeds instead of 4, plus the collective that reads the run's clock from seed
0), and XLA:CPU fuses and vectorizes by shape: float32 sums are reassociated. Measured on
this tiny dual config after 4 steps: largest |difference| 2.4e-7 (O(1) metrics), at most 8e-6
of a leaf's largest value; it is not bitwise even against one process training 2 seeds at a
time. The tolerance is 4x the largest difference seen.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from adasym_jax import distributed as dist
from adasym_jax.checkpoint import CheckpointError
from adasym_jax.runner import Trainer

from distributed_worker import FIRST_STEPS, MORE_STEPS, SEEDS, resume, train_and_save  # noqa: E402

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
NUM_PROCESSES = 2
TIMEOUT_S = 150  # per process; the pair normally finishes in ≈ 20 s
RTOL, ATOL = 1e-5, 1e-6


def _data() -> np.ndarray:
    return (np.random.default_rng(0).normal(size=(64, 2)) * 0.5).astype(np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _worker_env() -> dict[str, str]:
    """This environment (compilation cache included), CPU only, one device per process."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags + ["--xla_force_host_platform_device_count=1"]))


def _run_processes(tmp_path: Path, config, data: np.ndarray, save_to: Path, load_from: Path) -> list[dict[str, np.ndarray]]:
    """Start NUM_PROCESSES workers; each one's results (they end or are killed by TIMEOUT_S)."""
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    np.save(tmp_path / "data.npy", data)
    coordinator = f"localhost:{_free_port()}"
    procs = []
    for i in range(NUM_PROCESSES):
        cmd = [
            sys.executable, str(WORKER), "--coordinator", coordinator, "--num-processes", str(NUM_PROCESSES),
            "--process-id", str(i), "--config", str(tmp_path / "config.json"), "--data", str(tmp_path / "data.npy"),
            "--save-to", str(save_to), "--load-from", str(load_from), "--out", str(tmp_path / f"process{i}.npz"),
        ]
        log = open(tmp_path / f"process{i}.log", "w")
        procs.append((subprocess.Popen(cmd, env=_worker_env(), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path), log))
    try:
        for proc, _ in procs:
            proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()  # a peer that died leaves the other waiting in a collective
                proc.wait()
            log.close()
    logs = "\n".join(f"--- process {i} (exit {p.returncode}):\n" + (tmp_path / f"process{i}.log").read_text()[-3000:] for i, (p, _) in enumerate(procs))
    assert all(p.returncode == 0 for p, _ in procs), logs
    return [dict(np.load(tmp_path / f"process{i}.npz")) for i in range(NUM_PROCESSES)]


def _same(got: dict, want: dict, keys, exact: bool, what: str) -> None:
    assert keys, what
    for key in keys:
        a, b = got[key], want[key]
        if exact or a.dtype.kind != "f":
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {key}")
        else:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"{what}: {key}")


def _renamed(results: dict, old: str, new: str) -> dict:
    return {k.replace(old, new, 1): v for k, v in results.items() if k.startswith(old)}


@pytest.fixture(scope="module")
def trainer(tiny_config):
    return Trainer(tiny_config, 2)


@pytest.mark.slow
def test_two_processes_match_one_and_resume_each_others_checkpoints(tmp_path, trainer):
    data = _data()
    one_ckpt, two_ckpt = tmp_path / "one_process", tmp_path / "two_processes"
    one = train_and_save(trainer, data, one_ckpt)  # this process: 4 seeds on one device
    n = len(SEEDS)
    assert one["first/metrics['fw_nll']"].shape == (n, FIRST_STEPS) and one["more/state.step"].tolist() == [FIRST_STEPS + MORE_STEPS] * n

    two, other = _run_processes(tmp_path, trainer.config, data, two_ckpt, one_ckpt)
    # every process gathered the same full values, and refused 3 seeds over 2 devices
    _same(other, two, list(two), exact=True, what="process 1 vs process 0")
    assert str(two["error"]) == "3 seeds do not divide over 2 devices"

    # (a) the same numbers as one process: metrics of every step and the states at both points
    _same(two, one, [k for k in one if k.startswith(("first/", "more/"))], exact=False, what="2 processes vs 1")

    # (b) the 2-process checkpoint restores here bit for bit, and FIRST_STEPS + MORE_STEPS with a
    #     restart in between is the uninterrupted run
    back = resume(trainer, data, two_ckpt, "other")
    _same(_renamed(back, "other/loaded/", "first/"), two, [k for k in two if k.startswith("first/state")], exact=True, what="2-process checkpoint read by 1")
    _same(_renamed(back, "other/resumed/", "more/"), one, [k for k in one if k.startswith("more/")], exact=False, what="resumed by 1 vs uninterrupted")

    # (c) the reverse: the 1-process checkpoint read by 2 processes, resumed
    _same(_renamed(two, "other/loaded/", "first/"), one, [k for k in one if k.startswith("first/state")], exact=True, what="1-process checkpoint read by 2")
    _same(_renamed(two, "other/resumed/", "more/"), one, [k for k in one if k.startswith("more/")], exact=False, what="resumed by 2 vs uninterrupted")

    # within a layout a restart changes nothing at all
    _same(_renamed(two, "own/resumed/", "more/"), two, [k for k in two if k.startswith("more/")], exact=True, what="2 processes resumed")
    own = resume(trainer, data, one_ckpt, "own")
    _same(_renamed(own, "own/resumed/", "more/"), one, [k for k in one if k.startswith("more/")], exact=True, what="1 process resumed")


def test_importing_the_package_leaves_jax_uninitialized():
    """``initialize`` must come before JAX starts its backend, so importing the library (whose
    modules define ``@tuned_jit`` functions) must not start it."""
    code = "import adasym_jax, adasym_jax.distributed; from jax._src import xla_bridge; assert not xla_bridge.backends_are_initialized()"
    out = subprocess.run([sys.executable, "-c", code], env=_worker_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_bad_input_is_one_line_before_anything_compiles(tmp_path, tiny_config):
    data = _data()
    with pytest.raises(ValueError, match="4 seeds do not divide over 3 devices"):
        dist.train_sharded(tiny_config, data, 4, 1, devices=jax.devices() * 3)
    with pytest.raises(ValueError, match="data"):
        dist.train_sharded(tiny_config, data[:, 0], 1, 1)
    with pytest.raises(ValueError, match="num_steps"):
        dist.train_sharded(tiny_config, data, 1, 0)
    with pytest.raises(ValueError, match="coordinator"):
        dist.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="process_id"):
        dist.initialize("localhost:1234", 2, 2)
    with pytest.raises(CheckpointError, match="not a sharded checkpoint"):
        dist.load_sharded(tmp_path)
    state = {"step": np.zeros(2, np.int32)}
    with pytest.raises(ValueError, match="exists"):
        dist.save_sharded(tmp_path, state, tiny_config, 2, [0, 1])


@pytest.mark.parametrize("where", ["metric", "state"])
def test_a_non_finite_chunk_raises_with_the_state_before_it(tiny_config, where):
    """A custom step (no model compiled) that goes NaN at its second step: the run stops at
    the chunk holding it, naming the metric and its step, or the state."""
    import jax.numpy as jnp

    from adasym_jax.checkpoint import checkpoint_template
    from adasym_jax.runner import NonFiniteError

    def step(s, batch):
        bad = s.step >= 1
        new = s.replace(step=s.step + 1)
        if where == "state":
            new = new.replace(lambdas={k: jnp.where(bad, jnp.nan, v) for k, v in s.lambdas.items()})
            return new, {"fw_nll": jnp.float32(0.0)}
        return new, {"fw_nll": jnp.where(bad, jnp.nan, 0.0)}

    state = jax.tree.map(lambda t: np.zeros(t.shape, t.dtype), checkpoint_template(tiny_config, 2, [0, 1]))
    with pytest.raises(NonFiniteError) as err:
        dist.train_sharded(tiny_config, _data(), 2, 3, chunk_steps=1, state=state, trainer=Trainer(tiny_config, 2, step=step))
    assert int(dist.gather(err.value.last_good_state.step)[0]) == 1
    if where == "metric":
        assert (err.value.quantity, err.value.step) == ("fw_nll", 2)
    else:  # the leaf is named, as fit names it
        assert err.value.quantity.startswith(".lambdas[") and err.value.step == -1, err.value.quantity
        assert "in the state after step 2" in str(err.value)
