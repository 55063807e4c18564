"""``adasym latent``: bad input fails fast with one line; a tiny end-to-end run writes a run folder."""

import json

import numpy as np
import pytest

from adasym_jax.cli import main


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "images, extra, match",
    [
        (np.zeros((20, 8, 8), np.float32), [], "rank 4"),
        (np.full((20, 8, 8, 1), np.inf, np.float32), [], "NaN or infinite"),
        (np.zeros((20, 8, 8, 1), np.float32), ["--latent-dim", "65"], "larger than the input"),
        (np.zeros((20, 8, 8, 1), np.float32), ["--latent-dim", "0"], "positive integer"),
    ],
)
def test_bad_input_one_line_error(tmp_path, capsys, images, extra, match):
    f = tmp_path / "imgs.npy"
    np.save(f, images)
    code, _, err = _run(["latent", "--images", str(f), "--out", str(tmp_path / "run"), *extra], capsys)
    assert code == 1
    assert err.startswith("adasym: error:") and match in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing written before the error


def test_missing_file_and_pixel_space_misuse(tmp_path, capsys):
    code, _, err = _run(["latent", "--images", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "r")], capsys)
    assert code == 1 and "does not exist" in err
    f = tmp_path / "imgs.npy"
    np.save(f, np.zeros((20, 8, 8, 1), np.float32))
    code, _, err = _run(["latent", "--images", str(f), "--pixel-space", "--out", str(tmp_path / "r")], capsys)
    assert code == 1 and "--pixel-space" in err


def test_tiny_end_to_end(tmp_path, capsys):
    # nf keeps this fast and stable; the adasym pieces are tested in test_latent_recipe.py
    rng = np.random.default_rng(0)
    imgs = (rng.uniform(0, 255, (48, 8, 8, 1))).astype(np.uint8)
    f = tmp_path / "imgs.npz"
    np.savez(f, pics=imgs)
    out = tmp_path / "run"
    argv = [
        "latent", "--images", f"{f}:pics", "--latent-dim", "3", "--method", "nf", "--seeds", "1",
        "--out", str(out), "--epochs", "2", "--ae-epochs", "1", "--ae-batch", "16", "--warm-start-steps", "3",
        "--warm-start-samples", "16", "--zeta-every", "2", "--quiet",
        "--set", "num_transforms=1", "--set", "num_bins=4", "--set", "flow_hidden=8", "--set", "ebm_blocks=0",
        "--set", "ebm_hidden=8", "--set", "num_zeta_samples=16", "--set", "batch_size=16", "--set", "eval_zeta_samples=64",
    ]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "nf" and m["seeds"] == [0] and m["diverged"] == [False]
    assert len(m["evals"]["test_nll_p"]["curve"][0]) == 2
    assert np.isfinite(m["evals"]["test_nll_p"]["last"][0])
    for name in ("config.json", "checkpoint.json", "autoencoder.msgpack", "reconstructions.png", "samples.png"):
        assert (out / name).is_file(), name
    assert "latent test NLL" in stdout
    code, _, err = _run(argv, capsys)  # a second run into the same folder needs --overwrite
    assert code == 1 and "--overwrite" in err
