"""The benchmarks' multi-member training (benchmarks/_bench2d.train_members, a caller of
``runner.fit``) resumes from its checkpoint: a run interrupted after a save and continued gives
the same curves and state as the run that was never interrupted."""

import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _bench2d import train_members  # noqa: E402

from adasym_jax.runner import Trainer  # noqa: E402

STEPS, EVERY = 6, 2


class Stop(Exception):
    pass


def _xy():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(48, 2)) * 0.5).astype(np.float32), (rng.normal(size=(32, 2)) * 0.5).astype(np.float32)


def test_interrupted_and_resumed_equals_uninterrupted(tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, method="nf", lr_flow=1e-2)
    trainer = Trainer(cfg, 2)
    x, test = _xy()
    whole = train_members(trainer, trainer.init(2), x, test, STEPS, EVERY, "whole", log=lambda _: None)

    def stop_after_step_4(msg):
        if "step 4/" in msg:
            raise Stop

    work = tmp_path / "group"
    with pytest.raises(Stop):  # saves at every evaluation (save_every_seconds=0), then dies
        train_members(trainer, trainer.init(2), x, test, STEPS, EVERY, "g", log=stop_after_step_4, resume_dir=work, save_every_seconds=0)
    lines = []
    resumed = train_members(trainer, trainer.init(2), x, test, STEPS, EVERY, "g", log=lines.append, resume_dir=work, save_every_seconds=0)
    assert "resuming from step" in lines[0]
    # the save at step 4 happened before the interrupt (it comes after the log line), so the
    # resumed run continued from step 2's save or step 4's: either way the run is the same
    np.testing.assert_array_equal(resumed.eval_steps, whole.eval_steps)
    np.testing.assert_allclose(resumed.test_nll_p, whole.test_nll_p, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(resumed.state.flow_params), jax.tree.leaves(whole.state.flow_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # a finished group is read back without training
    again = train_members(trainer, trainer.init(2), x, test, STEPS, EVERY, "g", log=lines.append, resume_dir=work)
    np.testing.assert_array_equal(again.test_nll_p, resumed.test_nll_p)
    # other settings do not resume from it
    other = train_members(trainer, trainer.init(2), x, test, STEPS + 2, EVERY, "g", log=lines.append, resume_dir=work)
    assert other.eval_steps[-1] == STEPS + 2 and not any("resuming" in m for m in lines[-4:])
    # ... but a run resumes whether or not its flow's layer loop is unrolled (a trace-only setting)
    rolled = Trainer(dataclasses.replace(cfg, unroll_flow=not cfg.unroll_flow), 2)
    n = len(lines)
    same = train_members(rolled, rolled.init(2), x, test, STEPS + 2, EVERY, "g", log=lines.append, resume_dir=work)
    assert "resuming from step" in lines[n]  # the finished STEPS + 2 group, read back
    np.testing.assert_array_equal(same.test_nll_p, other.test_nll_p)
