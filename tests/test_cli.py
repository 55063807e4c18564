"""The `adasym` command, driven in-process through ``main([...])``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from adasym_jax import cli
from adasym_jax.data import load_dataset

# Several KEY=VALUE pairs in one --set and a repeated --set: both forms must be applied.
TINY = [
    "--set", "ebm_blocks=1", "ebm_hidden=8", "num_transforms=2", "num_bins=4",
    "--set", "flow_hidden=8",
    "--set", "num_zeta_samples=32", "eval_zeta_samples=64",
]  # fmt: skip
TINY_CONFIG = {"ebm_blocks": 1, "ebm_hidden": 8, "num_transforms": 2, "num_bins": 4, "flow_hidden": [8],
               "num_zeta_samples": 32, "eval_zeta_samples": 64}  # fmt: skip
# The same tiny model, data and steps as the notebook's test: the compiled programs are shared
# through the persistent cache.
SMALL_DATA = ["--dataset", "moons", "--n-train", "64", "--n-test", "32"]



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    code = cli.main(["train", *SMALL_DATA, "--steps", "4", "--eval-every", "2", "--seeds", "3,5,6,8,9", "--out", str(out), "--quiet", *TINY])
    assert code == 0
    return out


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_train_writes_the_results_contract(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["method"] == "adasym"
    cfg_flow = json.loads((run_dir / "config.json").read_text())["config"]["flow"]
    assert m["flow"] == cfg_flow == "autoregressive"  # both files say which p_θ (the default)
    assert m["seeds"] == [3, 5, 6, 8, 9]
    assert m["eval_steps"] == [2, 4]
    for key in ("test_nll_p", "test_nll_q", "log_zeta"):
        assert np.asarray(m[key]).shape == (5, 2), key
    assert set(m["lambdas"]) == {"fw", "rv", "prx", "zeta_u", "zeta_l"}
    assert np.asarray(m["lambdas"]["fw"]).shape == (5, 2)
    p = np.asarray(m["test_nll_p"])
    np.testing.assert_allclose(m["best_test_nll_p"], p.min(axis=1))
    np.testing.assert_allclose(m["last_test_nll_p"], p[:, -1])
    assert m["steps_per_second"] > 0 and m["compile_seconds"] > 0
    cfg = json.loads((run_dir / "config.json").read_text())
    assert {k: cfg["config"][k] for k in TINY_CONFIG} == TINY_CONFIG  # every pair of every --set
    assert cfg["run"]["dataset"] == "moons"
    assert (run_dir / "checkpoint.json").is_file()
    assert (run_dir / "density.png").stat().st_size > 1000
    assert (run_dir / "curves.png").stat().st_size > 1000


def test_train_refuses_to_overwrite(run_dir, capsys):
    before = (run_dir / "metrics.json").read_text()
    code = cli.main(["train", *SMALL_DATA, "--steps", "2", "--out", str(run_dir), *TINY])
    err = _one_line_error(capsys, code)
    assert "--overwrite" in err
    assert (run_dir / "metrics.json").read_text() == before


def test_evaluate_matches_the_runs_own_test_nll(run_dir, tmp_path, capsys):
    _, test = load_dataset("moons", 64, 32)
    np.save(tmp_path / "test.npy", test)
    out = tmp_path / "ev.npz"
    assert cli.main(["evaluate", "--run", str(run_dir), "--data", str(tmp_path / "test.npy"), "--out", str(out)]) == 0
    ev = np.load(out)
    assert ev["log_p"].shape == (5, 32) and ev["log_q"].shape == (5, 32) and ev["log_zeta"].shape == (5,)
    m = json.loads((run_dir / "metrics.json").read_text())
    # An independent code path (Trainer.evaluate inside fit) gave the same test NLL of p_θ.
    np.testing.assert_allclose(-ev["log_p"].mean(axis=1), m["last_test_nll_p"], rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(ev["log_q"]))
    assert "mean over 5 seeds" in capsys.readouterr().out


def test_sample_shapes_for_p_and_q(run_dir, tmp_path):
    out = tmp_path / "s.npy"
    assert cli.main(["sample", "--run", str(run_dir), "--num", "5", "--out", str(out)]) == 0
    s = np.load(out)
    assert s.shape == (5, 5, 2) and np.all(np.isfinite(s))
    assert cli.main(["sample", "--run", str(run_dir), "--num", "5", "--out", str(out), "--model", "q", "--langevin-steps", "3",
                     "--overwrite"]) == 0  # fmt: skip
    q = np.load(out)
    assert q.shape == (5, 5, 2)
    assert not np.allclose(q, s)  # Langevin moved the flow samples


def test_sample_refuses_context_for_unconditional_run(run_dir, tmp_path, capsys):
    code = cli.main(["sample", "--run", str(run_dir), "--num", "5", "--out", str(tmp_path / "s.npy"), "--context", "0.1,0.2"])
    assert "context" in _one_line_error(capsys, code)
    assert not (tmp_path / "s.npy").exists()


def test_plot_writes_pngs(run_dir, tmp_path):
    assert cli.main(["plot", "--run", str(run_dir), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "density.png").is_file() and (tmp_path / "curves.png").is_file()


def test_resume_continues_the_step_count(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(run_dir, copy)
    assert cli.main(["train", "--out", str(copy), "--resume", "--steps", "6", "--quiet", "--no-plots"]) == 0
    m = json.loads((copy / "metrics.json").read_text())
    old = json.loads((run_dir / "metrics.json").read_text())
    assert m["eval_steps"] == [2, 4, 6]
    assert m["final_step"] == 6
    np.testing.assert_allclose(np.asarray(m["test_nll_p"])[:, :2], np.asarray(old["test_nll_p"]))
    assert json.loads((copy / "checkpoint.json").read_text())["step"] == 6


def test_resume_may_switch_the_trace_only_unroll_setting(run_dir, tmp_path, capsys, monkeypatch):
    """``--set unroll_flow=false`` on --resume continues the same run under the rolled layer loop:
    the step that trains is the rolled one, the saved config records the switch, and the numbers
    match the plain (unrolled) resume."""
    import shutil

    import jax

    import adasym_jax.runner as runner
    from adasym_jax.results import load_run

    trained_with = []

    def spy(*args, _real=runner.fit, **kwargs):
        trained_with.append(kwargs["trainer"].config.unroll_flow)
        return _real(*args, **kwargs)

    monkeypatch.setattr(runner, "fit", spy)

    plain, rolled = tmp_path / "plain", tmp_path / "rolled"
    for copy in (plain, rolled):
        shutil.copytree(run_dir, copy)
    assert json.loads((run_dir / "config.json").read_text())["config"]["unroll_flow"] is True
    assert cli.main(["train", "--out", str(plain), "--resume", "--steps", "6", "--quiet", "--no-plots"]) == 0
    assert cli.main(["train", "--out", str(rolled), "--resume", "--steps", "6", "--set", "unroll_flow=false", "--quiet", "--no-plots"]) == 0
    assert trained_with == [True, False]
    assert json.loads((rolled / "config.json").read_text())["config"]["unroll_flow"] is False
    a, b = load_run(plain), load_run(rolled)
    assert b.config.unroll_flow is False and int(np.asarray(b.state.step).reshape(-1)[0]) == 6
    # float reduction order only; Adam can magnify it on near-zero gradients (atol as test_engine's)
    for x, y in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-3, rtol=0)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (plain, rolled))
    np.testing.assert_allclose(np.asarray(mb["test_nll_p"]), np.asarray(ma["test_nll_p"]), rtol=1e-3)
    # any other setting would change the run: one line, nothing written
    before = (rolled / "checkpoint.json").read_text()
    capsys.readouterr()  # the resumes' ζ̂ warnings
    code = cli.main(["train", "--out", str(rolled), "--resume", "--steps", "8", "--set", "lr_flow=1e-4"])
    assert "only unroll_flow may be set on --resume" in _one_line_error(capsys, code)
    assert (rolled / "checkpoint.json").read_text() == before
    code = cli.main(["train", "--out", str(rolled), "--resume", "--steps", "8", "--set", "unrol_flow=true"])
    assert "did you mean 'unroll_flow'" in _one_line_error(capsys, code)


def test_non_finite_training_saves_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    import adasym_jax.runner as runner

    def diverging_fit(data, *, state, **kwargs):
        raise runner.NonFiniteError("training diverged: fw_nll became NaN or infinite at step 3", state, 3, "fw_nll")

    monkeypatch.setattr(runner, "fit", diverging_fit)
    out = tmp_path / "nan"
    code = cli.main(["train", *SMALL_DATA, "--steps", "4", "--seeds", "2", "--out", str(out), "--quiet", *TINY])
    assert code == 3
    err = _one_line_error(capsys, code)
    assert "diverged" in err and "checkpoint" in err
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == 0 and meta["seeds"] == [0, 1]


def _write(path: Path, arr) -> str:
    np.save(path, arr)
    return str(path)


@pytest.mark.parametrize(
    "case",
    ["dataset", "method", "nan", "3d", "garbage", "missing", "dim", "one_row", "seeds", "override"],
)
def test_bad_input_gives_one_line_and_no_output(case, tmp_path, capsys):
    out = tmp_path / "out"
    good = _write(tmp_path / "good.npy", np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32))
    args = {
        "dataset": ["--dataset", "nosuchset"],
        "method": ["--dataset", "moons", "--method", "gan"],
        "nan": ["--data", _write(tmp_path / "nan.npy", np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]))],
        "3d": ["--data", _write(tmp_path / "cube.npy", np.zeros((4, 2, 2)))],
        "garbage": ["--data", str(tmp_path / "g.npy")],
        "missing": ["--data", str(tmp_path / "absent.npy")],
        "dim": ["--data", good, "--test-data", _write(tmp_path / "t3.npy", np.zeros((5, 3)))],
        "one_row": ["--data", _write(tmp_path / "row.npy", np.zeros((1, 2)))],
        "seeds": ["--dataset", "moons", "--seeds", "1,1"],
        "override": ["--dataset", "moons", "--set", "no_such_key=1"],
    }[case]
    (tmp_path / "g.npy").write_bytes(b"this is not numpy")
    code = cli.main(["train", *args, "--out", str(out), "--steps", "2"])
    _one_line_error(capsys, code)
    assert not out.exists()


def test_commands_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hi")
    for cmd in (["plot"], ["sample", "--num", "3", "--out", str(tmp_path / "s.npy")]):
        code = cli.main([*cmd, "--run", str(tmp_path)])
        assert "not a run" in _one_line_error(capsys, code)


def test_seed_parsing_and_demo_defaults(tmp_path):
    assert cli.parse_seeds("5") == [0, 1, 2, 3, 4]
    assert cli.parse_seeds("2,7") == [2, 7]
    assert cli.parse_seeds("3,") == [3]
    with pytest.raises(ValueError):
        cli.parse_seeds("x")
    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path / "d")])
    settings, train, test, std = cli._new_settings(args)
    assert settings["dataset"] == "moons" and settings["demo"]
    assert settings["steps"] == cli.DEMO["steps"] and settings["seeds"] == [0, 1]
    assert train.shape == (1000, 2) and test.shape == (10000, 2) and std is None


def test_extensions_register_subcommands(monkeypatch, tmp_path, capsys):
    ext = types.ModuleType("fake_ext_ok")

    def register(sub):
        p = sub.add_parser("hello")
        p.add_argument("--name", default="x")
        p.set_defaults(func=lambda a: print(f"hello {a.name}") or 5)

    ext.register = register
    monkeypatch.setitem(sys.modules, "fake_ext_ok", ext)
    monkeypatch.setattr(cli, "EXTENSIONS", ("adasym_jax.no_such_extension", "fake_ext_ok"))
    assert cli.main(["hello", "--name", "bob"]) == 5
    assert "hello bob" in capsys.readouterr().out

    # An extension that exists but fails to import is not hidden.
    (tmp_path / "fake_ext_broken.py").write_text("import not_a_real_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "EXTENSIONS", ("fake_ext_broken",))
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()


def test_sample_conditional_run_with_context(tmp_path, capsys):
    # A conditional run (as `adasym sbi` writes it): same checkpoint format, context_dim > 0.
    from adasym_jax.checkpoint import save_checkpoint
    from adasym_jax.config import TrainConfig
    from adasym_jax.runner import Trainer

    cfg = TrainConfig(context_dim=2, num_transforms=2, flow_hidden=(8,), num_bins=4, ebm_blocks=1, ebm_hidden=8, film_layers=1)
    trainer = Trainer(cfg, 3)
    save_checkpoint(tmp_path / "cond", trainer.init(2), cfg, 3, [0, 1])
    out = tmp_path / "post.npy"
    assert cli.main(["sample", "--run", str(tmp_path / "cond"), "--num", "4", "--context", "0.5,-1", "--out", str(out)]) == 0
    s = np.load(out)
    assert s.shape == (2, 4, 3) and np.all(np.isfinite(s))
    # A condition whose first number is negative, written as two tokens or joined by "=".
    neg, joined = tmp_path / "neg.npy", tmp_path / "joined.npy"
    assert cli.main(["sample", "--run", str(tmp_path / "cond"), "--num", "4", "--context", "-0.5,1", "--out", str(neg)]) == 0
    assert cli.main(["sample", "--run", str(tmp_path / "cond"), "--num", "4", "--context=-0.5,1", "--out", str(joined)]) == 0
    np.testing.assert_array_equal(np.load(neg), np.load(joined))
    code = cli.main(["sample", "--run", str(tmp_path / "cond"), "--num", "4", "--out", str(tmp_path / "x.npy")])
    assert "context" in _one_line_error(capsys, code)
    code = cli.main(["sample", "--run", str(tmp_path / "cond"), "--num", "4", "--context", "1,2,3", "--out", str(tmp_path / "x.npy")])
    assert "context" in _one_line_error(capsys, code)
    assert not (tmp_path / "x.npy").exists()


def test_standardized_runs_report_densities_and_samples_in_data_units(run_dir):
    import dataclasses

    import jax

    from adasym_jax.checkpoint import Standardization
    from adasym_jax.results import evaluate_run, load_run, sample_run

    run = load_run(run_dir)
    std = Standardization(np.array([1.0, -0.5]), np.array([2.0, 3.0]))
    scaled = dataclasses.replace(run, standardizer=std)
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    plain = evaluate_run(run, np.asarray(std.apply(x), np.float32))
    mapped = evaluate_run(scaled, x)
    # change of variables: log p_x(x) = log p_z((x − m)/s) − Σ log s
    np.testing.assert_allclose(mapped["log_p"], plain["log_p"] - np.log(6.0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mapped["log_q"], plain["log_q"] - np.log(6.0), rtol=1e-5, atol=1e-5)
    key = jax.random.PRNGKey(3)
    z = sample_run(run, 4, key)
    np.testing.assert_allclose(sample_run(scaled, 4, key), z * np.array([2.0, 3.0]) + np.array([1.0, -0.5]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "r"],
        ["sbi", "--task", "two_moons", "--out", "r"],
        ["latent", "--dataset", "digits", "--out", "r"],
    ],
)
def test_set_takes_several_pairs_per_flag_in_every_subcommand(argv):
    args = cli.build_parser().parse_args([*argv, "--set", "lr_flow=1e-3", "ebm_blocks=2", "--set", "num_bins=4"])
    assert getattr(args, "set" if argv[0] == "sbi" else "overrides") == ["lr_flow=1e-3", "ebm_blocks=2", "num_bins=4"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "moons"],
        ["sbi", "--task", "two_moons"],
        ["latent", "--dataset", "digits"],
    ],
)
def test_unknown_set_key_suggests_the_closest_field(argv, tmp_path, capsys):
    out = tmp_path / "r"
    code = cli.main([*argv, "--out", str(out), "--set", "num_bins=4", "lr_flw=1e-3"])
    err = _one_line_error(capsys, code)
    assert code == 1
    assert "unknown config key 'lr_flw'" in err and "did you mean 'lr_flow'" in err
    assert not out.exists()


def test_unknown_set_key_without_a_close_field(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "moons", "--out", str(tmp_path / "r"), "--set", "zzzzqqq=1"])
    err = _one_line_error(capsys, code)
    assert "unknown config key 'zzzzqqq'" in err and "did you mean" not in err


def test_number_list_options_accept_a_leading_minus():
    from adasym_jax.cli_args import join_negative_values

    argv = ["sample", "--run", "r", "--context", "-0.64,0.16", "--num", "-3", "--out", "-o.npy"]
    # only --context is joined; a negative --num stays an argparse matter
    assert join_negative_values(argv) == ["sample", "--run", "r", "--context=-0.64,0.16", "--num", "-3", "--out", "-o.npy"]
    assert join_negative_values(["--context", "--num"]) == ["--context", "--num"]  # not a number list
    assert join_negative_values(["--", "--context", "-1,2"]) == ["--", "--context", "-1,2"]
    parser = cli.build_parser()
    args = parser.parse_args(join_negative_values(["sbi", "--task", "two_moons", "--observation", "-.5,1e-3", "--out", "r"]))
    assert args.observation == "-.5,1e-3"
    with pytest.raises(cli.UsageError, match="expected one argument"):
        parser.parse_args(["sample", "--run", "r", "--num", "1", "--out", "o", "--context", "-0.64,0.16"])



def test_resume_keeps_the_original_command_and_lists_each_resume(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "twice"
    shutil.copytree(run_dir, copy)
    original = json.loads((run_dir / "config.json").read_text())["run"]["command"]
    assert original.startswith("adasym train --dataset moons")
    for steps in ("5", "6"):
        assert cli.main(["train", "--out", str(copy), "--resume", "--steps", steps, "--quiet", "--no-plots"]) == 0
    run = json.loads((copy / "config.json").read_text())["run"]
    assert run["command"] == original
    assert run["resumed_commands"] == [
        f"adasym train --out {copy} --resume --steps {s} --quiet --no-plots" for s in ("5", "6")
    ]


def test_checkpoint_every_saves_midway_under_one_progress_bar(tmp_path, monkeypatch, capsys):
    import re

    import adasym_jax.checkpoint as checkpoint

    saved = []
    real = checkpoint.save_checkpoint

    def recording(directory, state, *args, **kwargs):
        saved.append(int(np.asarray(state.step).reshape(-1)[0]))
        return real(directory, state, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", recording)
    out = tmp_path / "ck"
    code = cli.main(["train", *SMALL_DATA, "--steps", "6", "--eval-every", "2", "--checkpoint-every", "3", "--seeds", "2",
                     "--out", str(out), "--no-plots", *TINY])  # fmt: skip
    assert code == 0
    assert saved == [4, 6]  # every 3 rounded up to 4 (a multiple of --eval-every), and the end
    err = capsys.readouterr().err
    counts = [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) \[", err)]
    assert counts and {total for _, total in counts} == {6}  # one bar over the whole run
    done = [n for n, _ in counts]
    assert done == sorted(done) and done[-1] == 6


def test_plots_name_the_run_and_its_step(run_dir, tmp_path, monkeypatch):
    import inspect

    import adasym_jax.plotting as plotting

    calls = {}
    for name in ("plot_density_maps", "plot_curves"):
        real = getattr(plotting, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls[_name] = inspect.signature(_real).bind(*args, **kwargs).arguments
            return _real(*args, **kwargs)

        monkeypatch.setattr(plotting, name, spy)
    assert cli.main(["plot", "--run", str(run_dir), "--out", str(tmp_path)]) == 0
    assert calls["plot_density_maps"]["title"] == f"{run_dir.name}: adasym, step 4 (data units)"
    assert calls["plot_curves"]["title"] == f"{run_dir.name}: adasym, step 4"
    assert calls["plot_curves"]["zeta_band"] == pytest.approx((0.0, np.log1p(0.1)))


# --- training to convergence (issue 11 item 2) -------------------------------------------
NF_TINY = ["--set", "num_transforms=2", "num_bins=4", "flow_hidden=8", "lr_flow=3e-2"]


def _user_data(tmp_path, rows=60) -> str:
    return _write(tmp_path / "user.npy", (np.random.default_rng(0).normal(size=(rows, 2)) * 3).astype(np.float32))


def test_nf_on_user_data_trains_to_convergence_by_default(tmp_path, capsys):
    out = tmp_path / "nf"
    code = cli.main(["train", "--method", "nf", "--data", _user_data(tmp_path), "--steps", "300", "--seeds", "2",
                     "--out", str(out), "--quiet", "--no-plots", *NF_TINY])  # fmt: skip
    assert code == 0
    run = json.loads((out / "config.json").read_text())["run"]
    assert (run["validation_fraction"], run["patience"]) == (cli.CONVERGENCE["validation_fraction"], cli.CONVERGENCE["patience"])
    assert run["eval_every"] == 1  # one epoch of a full-batch run
    m = json.loads((out / "metrics.json").read_text())
    assert np.asarray(m["val_nll"], dtype=float).shape == (2, len(m["eval_steps"]))
    stop = np.asarray(m["stopping_step"])
    assert stop.shape == (2,) and stop.max() == m["final_step"] <= 300
    np.testing.assert_array_equal(m["stopping_epoch"], stop / m["steps_per_epoch"])
    assert len(m["best_val_nll"]) == 2 and len(m["restored_test_nll_p"]) == 2
    assert "early stopping (patience 20 evaluations)" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [["--method", "nf", "--fixed-steps"], ["--method", "adasym"]])
def test_fixed_steps_and_adasym_keep_the_fixed_length_run(flags, tmp_path):
    out = tmp_path / "fixed"
    code = cli.main(["train", *flags, "--data", _user_data(tmp_path), "--steps", "4", "--eval-every", "2", "--seeds", "2",
                     "--out", str(out), "--quiet", "--no-plots", *TINY])  # fmt: skip
    assert code == 0
    run = json.loads((out / "config.json").read_text())["run"]
    assert (run["validation_fraction"], run["patience"]) == (0.0, None)
    m = json.loads((out / "metrics.json").read_text())
    assert m["eval_steps"] == [2, 4] and m["final_step"] == 4
    assert not {"val_nll", "stopping_step", "stopping_epoch"} & set(m)


def test_patience_on_a_built_in_set_with_a_given_fraction(tmp_path):
    out = tmp_path / "es"
    code = cli.main(["train", *SMALL_DATA, "--method", "nf", "--patience", "2", "--validation-fraction", "0.25",
                     "--steps", "6", "--eval-every", "2", "--seeds", "2", "--out", str(out), "--quiet", "--no-plots", *TINY])  # fmt: skip
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert np.asarray(m["val_nll"], dtype=float).shape[0] == 2 and len(m["stopping_step"]) == 2
    run = json.loads((out / "config.json").read_text())["run"]
    assert (run["validation_fraction"], run["patience"]) == (0.25, 2)


@pytest.mark.parametrize(
    "flags, code, message",
    [
        (["--patience", "0"], 1, "--patience must be >= 1"),
        (["--validation-fraction", "1.5"], 1, "--validation-fraction must be in [0, 1)"),
        (["--validation-fraction", "0", "--patience", "3"], 1, "--patience needs a validation split"),
        (["--fixed-steps", "--patience", "3"], 2, "--fixed-steps and --patience exclude each other"),
        (["--rows", "4"], 1, "--validation-fraction 0.1 of 4 rows leaves 0 validation and 4 training rows"),
    ],
)
def test_bad_early_stopping_values_give_one_line(flags, code, message, tmp_path, capsys):
    out = tmp_path / "bad"
    rows = int(flags[1]) if flags[0] == "--rows" else 60
    test = _write(tmp_path / "test.npy", np.zeros((3, 2), np.float32))
    flags = ["--test-data", test] if flags[0] == "--rows" else flags
    got = cli.main(["train", "--method", "nf", "--data", _user_data(tmp_path, rows), *flags, "--out", str(out), "--steps", "2"])
    assert got == code and message in _one_line_error(capsys, got)
    assert not out.exists()


def test_resume_takes_early_stopping_from_the_run(run_dir, capsys):
    code = cli.main(["train", "--out", str(run_dir), "--resume", "--patience", "3"])
    assert code == 1 and "drop --patience" in _one_line_error(capsys, code)
