"""The 2D benchmarks record how each run was made (command, commit, finish time, load average) and
a report rebuilt later states those, not the rebuilding command's; hand-written notes beside a
results file survive a regeneration. Unit level: fake curves, no training."""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _bench2d  # noqa: E402
import gmm40  # noqa: E402
from _bench2d import Curves  # noqa: E402


def _curves(rng, members=2, evals=4):
    v = rng.normal(size=(members, evals))
    return Curves("x", np.arange(1, evals + 1) * 10, v, v + 1.0, np.zeros_like(v), {}, np.full(members, -1), 5.0, 1.0, None)


def _args():
    return argparse.Namespace(steps=40, eval_every=10, seeds=2, pw_seeds=1, c4_seeds=2, eval_zeta=100)


def _rec(cmd, commit, load=(0.1, 0.2, 0.3)):
    return {"command": cmd, "commit": commit, "utc": "2026-01-01 00:00:00", "device": "cpu (test), 2 CPU cores",
            "load_start": list(load), "load_end": [1.9, 1.5, 1.0]}


def test_provenance_load_is_taken_at_start_and_at_the_call(monkeypatch):
    monkeypatch.setattr(_bench2d, "_START_LOAD", (0.5, 0.25, 0.125))
    monkeypatch.setattr(_bench2d.os, "getloadavg", lambda: (1.75, 1.5, 1.25))
    r = _bench2d.provenance()
    assert r["load_start"] == [0.5, 0.25, 0.12] or r["load_start"] == [0.5, 0.25, 0.13]
    assert r["load_end"] == [1.75, 1.5, 1.25]
    assert "load average (1, 5, 15 min) 0.50, 0.25" in _bench2d.record_lines(r)[1]


def test_provenance_lines_group_runs_by_command():
    recs = {"dual": _rec("python a", "aaa"), "nf": _rec("python a", "aaa"), "pw 5:1": {"command": "python b", "commit": "bbb"}}
    lines = _bench2d.provenance_lines(recs)
    assert len(lines) == 2
    assert lines[0].startswith("- dual, nf: `python a` at commit `aaa`") and "0.10, 0.20, 0.30 at the command's start" in lines[0]
    assert lines[1].startswith("- pw 5:1: `python b` at commit `bbb`") and "load average not recorded" in lines[1]
    assert "on cpu (test), 2 CPU cores" in lines[0] and "a device not recorded" in lines[1]
    # fields entered by hand as None are said to be unknown, not printed as None
    hand = _bench2d.record_lines({"command": "python c", "commit": None, "utc": None, "load_start": None, "load_end": [1, 1, 1]})
    assert "None" not in " ".join(hand) and "finish time not recorded" in hand[0] and "load average not recorded" in hand[1]


def test_gmm40_report_states_the_recorded_commands_not_the_rewriting_one(tmp_path):
    rng = np.random.default_rng(0)
    runs = {"dual": _curves(rng), "nf": _curves(rng)}
    # one command made both runs: its command and load are in the header
    one = {"dual": _rec("python benchmarks/gmm40.py --steps 40", "aaa1111"), "nf": _rec("python benchmarks/gmm40.py --steps 40", "aaa1111")}
    gmm40.write_report(runs, [], -0.38, _args(), float("nan"), tmp_path, one)
    text = (tmp_path / "gmm40.md").read_text()
    assert "Command: `python benchmarks/gmm40.py --steps 40` at commit `aaa1111`" in text
    assert "0.10, 0.20, 0.30 at the command's start, 1.90, 1.50, 1.00 at the end" in text
    assert "How this file was made" not in text
    # two commands: each is listed with the runs it made, and notes beside the file are kept
    two = {"dual": _rec("python one", "aaa1111"), "nf": _rec("python two", "bbb2222", (0.0, 0.0, 0.0))}
    (tmp_path / "gmm40_notes.md").write_text("## Notes\n\nwritten by hand")
    gmm40.write_report(runs, [], -0.38, _args(), float("nan"), tmp_path, two)
    text = (tmp_path / "gmm40.md").read_text()
    assert "## How this file was made" in text
    assert "- dual: `python one` at commit `aaa1111`" in text and "- nf: `python two` at commit `bbb2222`" in text
    assert text.rstrip().endswith("written by hand")
    # a run with no record is named as such
    gmm40.write_report(runs, [], -0.38, _args(), float("nan"), tmp_path, {"dual": _rec("python one", "aaa1111")})
    assert "- nf: command not recorded" in (tmp_path / "gmm40.md").read_text()


def test_pw_record_name_lists_pairs_in_grid_order():
    from adasym_jax.baselines import PW_WEIGHTS, GridMember, pw_grid_members

    assert gmm40.pw_record_name([GridMember(0, 5.0, 1.0, 1.0), GridMember(0, 0.2, 5.0, 1.0)]) == "pw 0.2:5,5:1"
    assert gmm40.pw_record_name(pw_grid_members(1, PW_WEIGHTS)) == "pw all 25 pairs"


def test_gmm40_report_names_pw_pairs_without_a_record(tmp_path):
    from adasym_jax.baselines import GridMember

    rng = np.random.default_rng(1)
    members = [GridMember(0, 0.2, 0.2, 1.0), GridMember(0, 5.0, 1.0, 1.0), GridMember(0, 5.0, 5.0, 1.0)]
    runs = {"dual": _curves(rng), "pw": _curves(rng, members=3)}
    # (5, 1) was added by a recorded command; (0.2, 0.2) and (5, 5) came from before records were kept
    recs = {"dual": _rec("python one", "aaa1111"), "pw 5:1": _rec("python two", "bbb2222")}
    gmm40.write_report(runs, members, -0.38, _args(), float("nan"), tmp_path, recs)
    text = (tmp_path / "gmm40.md").read_text()
    assert "- pw 0.2:0.2,5:5: command not recorded" in text
    assert "Compile + training time of all runs, added over their commands" in text
    assert gmm40.record_pairs("pw 0.2:5,5:1") == {(0.2, 5.0), (5.0, 1.0)} and len(gmm40.record_pairs("pw all 25 pairs")) == 25


def test_gmm40_report_only_states_the_settings_the_groups_ran_with():
    from adasym_jax.baselines import GridMember

    rng = np.random.default_rng(2)
    runs = {"dual": _curves(rng, members=3, evals=5), "wgan_0.001": _curves(rng, members=4, evals=2)}
    members = [GridMember(0, 0.2, 0.2, 1.0), GridMember(1, 0.2, 0.2, 1.0), GridMember(0, 5.0, 1.0, 1.0)]
    raw = {"pw": {"settings": {"steps": 30, "eval_every": 10, "eval_zeta": 777}}}
    args = gmm40.parse(["--report-only"])  # this command's defaults differ from every stored value
    gmm40.settings_from_json(args, runs, raw, members)
    assert (args.steps, args.eval_every, args.seeds) == (50, 10, 3)
    assert (args.c4_steps, args.c4_seeds) == (20, 4)
    assert (args.pw_steps, args.eval_zeta, args.pw_seeds) == (30, 777, 2)


def test_gmm40_report_only_settings_survive_an_early_stop_and_missing_groups(capsys):
    rng = np.random.default_rng(3)
    stopped = _curves(rng, members=3, evals=2)  # every member diverged: stopped at step 20
    full = _curves(rng, members=3, evals=5)
    args = gmm40.parse(["--report-only"])
    gmm40.settings_from_json(args, {"dual": stopped, "nf": full}, {}, [])
    assert (args.steps, args.eval_every, args.seeds) == (50, 10, 3)
    # without a P-W group the ζ sample count is not in the JSON: the flag stays, with a warning
    assert args.eval_zeta == gmm40.parse(["--report-only"]).eval_zeta
    assert "does not record the number of flow samples" in capsys.readouterr().err
    # neither dual nor nf stored: the longest other group gives the scale
    args = gmm40.parse(["--report-only"])
    gmm40.settings_from_json(args, {"dual_sgd": _curves(rng, members=4, evals=3)}, {"pw": {"settings": None}}, [])
    assert (args.steps, args.seeds) == (30, 4)


def test_command_line_writes_paths_inside_the_repo_relative_to_its_root(monkeypatch, tmp_path):
    # A run from another checkout (a frozen worktree) must record the same command, with no
    # machine-specific path; paths outside the repository and plain values stay as typed.
    root = Path(_bench2d.__file__).resolve().parents[1]
    outside = str(tmp_path / "elsewhere")
    monkeypatch.setattr(sys, "argv", ["benchmarks/sbi_npe.py", "--out", str(root / "benchmarks" / "results"), "--work", outside, "--seeds", "5"])
    assert _bench2d.command_line() == f"python benchmarks/sbi_npe.py --out benchmarks/results --work {outside} --seeds 5"
