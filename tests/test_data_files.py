"""What `adasym train` reads as training and test data: text tables, an ``.npz``'s ``test``
array, a warning when the test set is the training set, one line saying what was used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adasym_jax import cli
from adasym_jax.arrays import ArrayFileError, load_array, load_array_with_source

TINY = [
    "--set", "ebm_blocks=1", "--set", "ebm_hidden=8", "--set", "num_transforms=2", "--set", "num_bins=4",
    "--set", "flow_hidden=8", "--set", "num_zeta_samples=32", "--set", "eval_zeta_samples=64",
]  # fmt: skip


def _points(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)


def _settings(data, **kw):
    return {"dataset": None, "data": str(data), "test_data": None, "test_fraction": 0.1, "data_seed": 0, **kw}


# -- text tables ---------------------------------------------------------------------------


def test_csv_with_header_is_read(tmp_path):
    x = _points(7)
    f = tmp_path / "pts.csv"
    f.write_text("x,y\n" + "\n".join(f"{a!r},{b!r}" for a, b in x.tolist()) + "\n")
    arr, src = load_array_with_source(str(f))
    np.testing.assert_array_equal(arr, x)
    assert src.header


def test_csv_without_header_tsv_and_whitespace_txt(tmp_path):
    x = _points(5)
    (tmp_path / "a.csv").write_text("\n".join(f"{a!r},{b!r}" for a, b in x.tolist()))
    (tmp_path / "a.tsv").write_text("\n".join(f"{a!r}\t{b!r}" for a, b in x.tolist()))
    (tmp_path / "a.txt").write_text("# a comment\n" + "\n".join(f"{a!r}   {b!r}" for a, b in x.tolist()))
    for name in ("a.csv", "a.tsv", "a.txt"):
        arr, src = load_array_with_source(str(tmp_path / name))
        np.testing.assert_array_equal(arr, x, err_msg=name)
        assert not src.header


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("bad.csv", "x,y\n1,2\n3,NA\n", "line 3 is not all numbers"),
        ("hole.csv", "1,2\n3,\n", "line 2"),
        ("ragged.csv", "1,2\n3,4,5\n", "number of columns"),
        ("empty.csv", "x,y\n", "no numeric rows"),
        ("data.dat", "1,2\n3,4\n", "not a .npy/.npz file"),
    ],
)
def test_bad_text_files_are_refused_in_one_line(tmp_path, name, text, match):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ArrayFileError, match=match) as info:
        load_array(str(f))
    assert str(f) in str(info.value) and len(str(info.value).splitlines()) == 1
    assert "pickled" not in str(info.value)


def test_object_npy_says_so(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    with pytest.raises(ArrayFileError, match="Python objects"):
        load_array(str(tmp_path / "obj.npy"))


def test_csv_through_train_command(tmp_path, capsys):
    x = _points(40)
    f = tmp_path / "pts.csv"
    f.write_text("a,b\n" + "\n".join(f"{a!r},{b!r}" for a, b in x.tolist()))
    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(f), "--steps", "2", "--eval-every", "2", "--seeds", "1", "--out", str(out),
                     "--quiet", "--no-plots", *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"data: {f} (header row skipped), 36 x 2; test: 4 rows held out" in captured.out
    settings = json.loads((out / "config.json").read_text())["run"]
    assert settings["test_source"].startswith("4 rows held out")


def test_bad_csv_through_train_is_one_line_and_writes_nothing(tmp_path, capsys):
    f = tmp_path / "pts.csv"
    f.write_text("a,b\n1,2\n3,oops\n4,5\n")
    code = cli.main(["train", "--data", str(f), "--steps", "2", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("adasym: error:") and "line 3" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- the test set ---------------------------------------------------------------------------


def test_npz_test_array_is_the_test_set(tmp_path, capsys):
    train, test = _points(30, 1), _points(9, 2)
    np.savez(tmp_path / "d.npz", train=train, test=test)
    settings = _settings(tmp_path / "d.npz")
    got_train, got_test, _ = cli._load_train_data(settings)
    np.testing.assert_array_equal(got_train, train)  # nothing held out of train
    np.testing.assert_array_equal(got_test, test)
    out = capsys.readouterr()
    assert f"data: {tmp_path / 'd.npz'}:train, 30 x 2; test: the file's 'test' array" in out.out
    assert "test" in settings["test_source"] and out.err == ""


def test_npz_test_array_with_an_explicit_key(tmp_path, capsys):
    x, test = _points(30, 1), _points(9, 2)
    np.savez(tmp_path / "d.npz", x=x, test=test, other=np.zeros(3))
    _, got_test, _ = cli._load_train_data(_settings(f"{tmp_path / 'd.npz'}:x"))
    np.testing.assert_array_equal(got_test, test)


def test_test_data_flag_wins_over_the_npz_test_array(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", train=_points(30, 1), test=_points(9, 2))
    other = _points(5, 3)
    np.save(tmp_path / "t.npy", other)
    _, got_test, _ = cli._load_train_data(_settings(tmp_path / "d.npz", test_data=str(tmp_path / "t.npy")))
    np.testing.assert_array_equal(got_test, other)
    assert "--test-data" in capsys.readouterr().out


def test_npz_without_test_array_holds_out_a_fraction(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", train=_points(30, 1), val=_points(4, 2))
    got_train, got_test, _ = cli._load_train_data(_settings(tmp_path / "d.npz"))
    assert got_train.shape == (27, 2) and got_test.shape == (3, 2)
    assert "held out" in capsys.readouterr().out


@pytest.mark.parametrize("n, fraction, why", [(3, 0.1, "too few"), (50, 0.0, "--test-fraction 0")])
def test_warns_when_test_set_is_training_set(tmp_path, capsys, n, fraction, why):
    np.save(tmp_path / "x.npy", _points(n))
    train, test, _ = cli._load_train_data(_settings(tmp_path / "x.npy", test_fraction=fraction))
    assert test is train
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "test set is the training set" in err[0] and why in err[0]


def test_no_warning_when_a_test_set_exists(tmp_path, capsys):
    np.save(tmp_path / "x.npy", _points(50))
    cli._load_train_data(_settings(tmp_path / "x.npy"))
    assert capsys.readouterr().err == ""


def test_report_false_is_silent(tmp_path, capsys):
    np.save(tmp_path / "x.npy", _points(3))
    cli._load_train_data(_settings(tmp_path / "x.npy"), report=False)
    assert capsys.readouterr() == ("", "")


def test_settings_without_a_data_source_is_a_clear_error():
    with pytest.raises(ValueError, match="no data source"):
        cli._load_train_data({"task": "two_moons"}, report=False)
