"""Files the library writes (atomically, through a 0600 temporary file) get the mode the
user's umask gives any new file: 0o666 & ~umask."""

import os
import stat

import numpy as np
import pytest

from adasym_jax.checkpoint import current_umask, new_file_mode, save_checkpoint
from adasym_jax.cli import _save_array
from adasym_jax.config import TrainConfig
from adasym_jax.results import write_json
from adasym_jax.runner import Trainer


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing(umask):
    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027  # reading did not change it
    assert new_file_mode() == 0o640


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_json_and_array_writers_follow_umask(tmp_path, umask, mask, expected):
    umask(mask)
    write_json(tmp_path / "m.json", {"a": 1.0})
    assert _mode(tmp_path / "m.json") == expected
    _save_array(str(tmp_path / "new" / "x.npy"), lambda f: np.save(f, np.zeros(3)))
    assert _mode(tmp_path / "new" / "x.npy") == expected
    # a plain open() under the same umask agrees
    (tmp_path / "plain").write_text("x")
    assert _mode(tmp_path / "plain") == expected


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_checkpoint_files_follow_umask(tmp_path, umask, mask, expected):
    config = TrainConfig(num_transforms=1, num_bins=4, flow_hidden=(8,), ebm_hidden=8, ebm_blocks=0)
    state = Trainer(config, 2).init([0])
    umask(mask)
    d = save_checkpoint(tmp_path / "ckpt", state, config, 2, [0])
    files = [p for p in d.iterdir() if p.is_file()]
    assert any(p.name == "checkpoint.json" for p in files)
    assert any(p.suffix == ".msgpack" for p in files)
    for p in files:
        assert _mode(p) == expected, p.name
