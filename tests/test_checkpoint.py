"""Checkpoints: exact round trip, exact resume, clear errors, and no damage to a good checkpoint."""

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization

import adasym_jax as aj
from adasym_jax import checkpoint as ckpt


SEEDS = [0, 3]
N_STEPS, K_STEPS = 4, 2  # k == N - k: two compiled chunk lengths, not three


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def run(tiny_config, tmp_path_factory):
    """A few real training steps, then a saved checkpoint."""
    trainer = aj.Trainer(tiny_config, 2)
    x, _ = aj.load_dataset("gmm_ring", n_train=64, n_test=8)
    stats = aj.Standardization.fit(x)
    x = stats.apply(x)
    state0 = trainer.init(SEEDS)
    state_k, _ = trainer.run(state0, x, K_STEPS)
    folder = tmp_path_factory.mktemp("ckpt") / "run"
    aj.save_checkpoint(folder, state_k, tiny_config, 2, SEEDS, extra={"note": "k steps"}, standardization=stats)
    return trainer, x, state0, state_k, folder, stats


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_round_trip_is_exact(run, tiny_config):
    _, _, _, state_k, folder, stats = run
    state, meta = aj.load_checkpoint(folder)
    assert _leaves_equal(state, jax.device_get(state_k))
    assert jax.tree.structure(state) == jax.tree.structure(state_k)
    assert all(np.asarray(a).dtype == np.asarray(b).dtype for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_k)))
    assert meta["step"] == K_STEPS and meta["seeds"] == SEEDS and meta["dim"] == 2
    assert aj.TrainConfig.from_dict(meta["config"]) == tiny_config
    assert meta["extra"]["note"] == "k steps"
    back = aj.read_standardization(folder)
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.std, stats.std)
    assert aj.is_checkpoint(folder) and not aj.is_checkpoint(folder.parent)
    # plain formats only: JSON and a msgpack of nested dicts of arrays (no pickle)
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".msgpack"]
    raw = serialization.msgpack_restore((folder / meta["state_file"]).read_bytes())
    assert set(raw) == {"step", "key", "flow_params", "ebm_params", "ebm_stats", "lambdas", "flow_opt", "ebm_opt", "dual_opt", "zeta_cache"}


def test_resume_is_exact(run):
    """N steps in one go == k steps, save, load, N - k more (the PRNG key travels in the state).

    Both paths run the same scanned step on the same inputs; XLA compiles the scan body once
    per program and the loop does not reassociate across iterations, so the results agree
    bitwise (checked here; a tolerance would hide a lost PRNG stream only if it were loose).
    """
    trainer, x, state0, _, folder, _ = run
    full, _ = trainer.run(state0, x, N_STEPS)
    loaded, meta = aj.load_checkpoint(folder)
    resumed, _ = trainer.run(loaded, x, N_STEPS - K_STEPS)
    assert int(np.asarray(resumed.step)[0]) == N_STEPS
    assert _leaves_equal(resumed, full), f"max difference {_max_diff(resumed, full)}"
    # the key moved on (it is used every step), so equality above is not trivially true
    assert not np.array_equal(np.asarray(loaded.key), np.asarray(state0.key))
    assert not np.array_equal(np.asarray(resumed.key), np.asarray(loaded.key))


def test_another_architecture_is_named(run, tiny_config):
    _, _, _, _, folder, _ = run
    with pytest.raises(aj.CheckpointError, match=r"ebm_hidden: checkpoint 16 vs 32") as e:
        aj.load_checkpoint(folder, config=tiny_config.replace(ebm_hidden=32))
    assert "shape" in str(e.value)
    with pytest.raises(aj.CheckpointError, match=r"missing keys \['_ResidualBlock_1'\].*ebm_blocks"):
        aj.load_checkpoint(folder, config=tiny_config.replace(ebm_blocks=2))
    with pytest.raises(aj.CheckpointError, match=r"flow_params.*shape \(2, 2,.*expected \(2, 3,.*num_transforms"):
        aj.load_checkpoint(folder, config=tiny_config.replace(num_transforms=3))
    # a template with a different number of seeds
    template = ckpt.checkpoint_template(tiny_config, 2, [0, 1, 2])
    with pytest.raises(aj.CheckpointError, match=r"shape \(2,\), expected \(3,\)"):
        aj.load_checkpoint(folder, template)


def test_truncated_and_corrupt_files(run, tmp_path):
    _, _, _, _, folder, _ = run
    meta = aj.read_metadata(folder)
    bad = _copy_checkpoint(folder, tmp_path / "truncated")
    data = (bad / meta["state_file"]).read_bytes()
    (bad / meta["state_file"]).write_bytes(data[: len(data) // 2])
    with pytest.raises(aj.CheckpointError, match=r"truncated.*\d+ bytes, expected \d+"):
        aj.load_checkpoint(bad)
    flipped = _copy_checkpoint(folder, tmp_path / "flipped")
    (flipped / meta["state_file"]).write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(aj.CheckpointError, match="SHA-256"):
        aj.load_checkpoint(flipped)
    half_json = _copy_checkpoint(folder, tmp_path / "json")
    text = (half_json / ckpt.META_FILE).read_text()
    (half_json / ckpt.META_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(aj.CheckpointError, match="truncated or not valid JSON"):
        aj.load_checkpoint(half_json)
    gone = _copy_checkpoint(folder, tmp_path / "gone")
    (gone / meta["state_file"]).unlink()
    with pytest.raises(aj.CheckpointError, match="is missing"):
        aj.load_checkpoint(gone)
    with pytest.raises(aj.CheckpointError, match="not a checkpoint"):
        aj.load_checkpoint(tmp_path / "nowhere")


def _rewrite_state(folder: Path, state_dict: dict) -> None:
    """Replace the state with ``state_dict``, keeping the metadata's size and checksum valid."""
    meta = json.loads((folder / ckpt.META_FILE).read_text())
    data = serialization.msgpack_serialize(state_dict)
    (folder / meta["state_file"]).write_bytes(data)
    meta.update(state_bytes=len(data), state_sha256=hashlib.sha256(data).hexdigest())
    (folder / ckpt.META_FILE).write_text(json.dumps(meta))


def test_missing_key_is_named(run, tmp_path):
    _, _, _, _, folder, _ = run
    meta = aj.read_metadata(folder)
    no_prx = _copy_checkpoint(folder, tmp_path / "no_prx")
    raw = serialization.msgpack_restore((folder / meta["state_file"]).read_bytes())
    del raw["lambdas"]["prx"]
    _rewrite_state(no_prx, raw)
    with pytest.raises(aj.CheckpointError, match=r"/lambdas: missing keys \['prx'\]"):
        aj.load_checkpoint(no_prx)
    no_dim = _copy_checkpoint(folder, tmp_path / "no_dim")
    m = dict(meta)
    del m["dim"]
    (no_dim / ckpt.META_FILE).write_text(json.dumps(m))
    with pytest.raises(aj.CheckpointError, match="lacks the key 'dim'"):
        aj.load_checkpoint(no_dim)
    newer = _copy_checkpoint(folder, tmp_path / "newer")
    (newer / ckpt.META_FILE).write_text(json.dumps(dict(meta, format_version=99)))
    with pytest.raises(aj.CheckpointError, match="format version 99"):
        aj.read_metadata(newer)


def test_failed_save_leaves_good_checkpoint(run, tiny_config, tmp_path, monkeypatch):
    _, _, state0, state_k, folder, _ = run
    good = _copy_checkpoint(folder, tmp_path / "good")
    before = sorted(p.name for p in good.iterdir())
    # bad metadata is refused before anything is written
    with pytest.raises(ValueError, match="JSON"):
        aj.save_checkpoint(good, state0, tiny_config, 2, SEEDS, extra={"bad": object()})
    with pytest.raises(ValueError, match="seeds"):
        aj.save_checkpoint(good, state0, tiny_config, 2, [0])
    assert sorted(p.name for p in good.iterdir()) == before
    # a crash while writing the state file, then one just before the metadata is replaced
    real_fsync = os.fsync
    monkeypatch.setattr(ckpt.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        aj.save_checkpoint(good, state0, tiny_config, 2, SEEDS)
    monkeypatch.setattr(ckpt.os, "fsync", real_fsync)
    real_write = ckpt._atomic_write

    def crash_on_metadata(path, data):
        if path.name == ckpt.META_FILE:
            raise KeyboardInterrupt("killed")
        real_write(path, data)

    monkeypatch.setattr(ckpt, "_atomic_write", crash_on_metadata)
    with pytest.raises(KeyboardInterrupt):
        aj.save_checkpoint(good, state0, tiny_config, 2, SEEDS)
    monkeypatch.setattr(ckpt, "_atomic_write", real_write)
    loaded, meta = aj.load_checkpoint(good)
    assert meta["step"] == K_STEPS and _leaves_equal(loaded, jax.device_get(state_k))
    assert not any(p.suffix == ".tmp" for p in good.iterdir())
    # a complete save replaces it and removes the old state file
    aj.save_checkpoint(good, state0, tiny_config, 2, SEEDS)
    loaded, meta = aj.load_checkpoint(good)
    assert meta["step"] == 0 and _leaves_equal(loaded, jax.device_get(state0))
    assert len(list(good.glob("*.msgpack"))) == 1


def test_format_1_is_still_read(run, tiny_config, tmp_path):
    """Checkpoints of the first format (``state.msgpack``, no checksum) stay readable."""
    _, _, _, state_k, folder, _ = run
    meta = aj.read_metadata(folder)
    old = tmp_path / "v1"
    old.mkdir()
    (old / ckpt.STATE_FILE).write_bytes((folder / meta["state_file"]).read_bytes())
    v1 = {k: meta[k] for k in ("config", "dim", "seeds", "step", "extra")}
    (old / ckpt.META_FILE).write_text(json.dumps(dict(v1, format_version=1)))
    loaded, _ = aj.load_checkpoint(old)
    assert _leaves_equal(loaded, jax.device_get(state_k))


def test_standardization_checks():
    with pytest.raises(ValueError, match="std > 0"):
        aj.Standardization(mean=[0.0, 0.0], std=[1.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        aj.Standardization(mean=[0.0, 0.0], std=[1.0])
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 2))
    s = aj.Standardization.fit(x)
    z = s.apply(x)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(s.invert(z), x, atol=1e-4)
    assert s.log_det == pytest.approx(np.sum(np.log(x.std(0))), rel=1e-5)
