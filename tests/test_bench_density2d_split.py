"""benchmarks/density2d.py can run its five sets as separate commands into one report: a set an
earlier command ran is kept when its steps and seeds match this command's and dropped otherwise,
its density maps come back from ``density2d_maps.npz`` unchanged, and the report names each
set's own command. Unit level: fake curves, no training."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import density2d as d2  # noqa: E402
from _bench2d import Curves  # noqa: E402


def _curves(rng, members=2, evals=3):
    nll = rng.normal(size=(members, evals))
    return Curves("x", np.arange(1, evals + 1) * 10, nll, nll + 0.1, np.zeros((members, evals)), {},
                  -np.ones(members, int), 12.5, 1.5, None)


def _maps(rng):
    return {"data": rng.normal(size=(5, 2)), "xlim": (-1.0, 1.0), "ylim": (-2.0, 2.0),
            "dual": (rng.normal(size=64 * 64), rng.normal(size=64 * 64)), "nf": (rng.normal(size=64 * 64), rng.normal(size=64 * 64))}


def _write(out: Path, sets, steps, seeds, rng, command="python benchmarks/density2d.py --datasets a"):
    results = {n: {"dual": _curves(rng), "nf": _curves(rng)} for n in sets}
    maps = {n: _maps(rng) for n in sets}
    runs = {n: {"steps": steps, "seeds": seeds, "eval_every": 10, "eval_zeta": 100, "command": command,
                "commit": "abc1234", "utc": "2026-01-01 00:00:00"} for n in sets}
    d2.save_raw(results, out)
    d2.save_maps(maps, out)
    (out / "density2d_runs.json").write_text(json.dumps(runs))
    return results, maps


def _args(datasets, steps=30, seeds=2, extra=()):
    return argparse.Namespace(datasets=datasets, steps=steps, seeds=seeds, eval_every=10, eval_zeta=100, extra=list(extra))


def test_maps_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    maps = {"rings": _maps(rng), "moons": _maps(rng)}
    d2.save_maps(maps, tmp_path)
    back = d2.load_maps(tmp_path)
    assert set(back) == {"rings", "moons"}
    for n, m in maps.items():
        np.testing.assert_array_equal(back[n]["data"], m["data"])
        assert back[n]["xlim"] == m["xlim"] and back[n]["ylim"] == m["ylim"]
        for method in ("dual", "nf"):
            for a, b in zip(back[n][method], m[method]):
                np.testing.assert_array_equal(a, b)


def test_kept_sets_keeps_matching_and_drops_others(tmp_path, capsys):
    rng = np.random.default_rng(1)
    results, _ = _write(tmp_path, ["rings", "gmm_grid"], 30, 2, rng)
    # this command trains gmm_grid again: only rings is kept, with its curves unchanged
    kept, maps, runs = d2.kept_sets(tmp_path, _args(["gmm_grid", "moons"]))
    assert set(kept) == set(maps) == set(runs) == {"rings"}
    np.testing.assert_allclose(kept["rings"]["dual"].test_nll_p, results["rings"]["dual"].test_nll_p)
    # other steps or other seeds: nothing is kept, and the command says what it dropped
    other_eval = _args(["moons"])
    other_eval.eval_zeta = 200
    for args in (_args(["moons"], steps=40), _args(["moons"], seeds=3), other_eval):
        kept, maps, runs = d2.kept_sets(tmp_path, args)
        assert kept == maps == runs == {}
        err = capsys.readouterr().err
        assert "dropping" in err and "rings" in err and "gmm_grid" in err


def test_kept_sets_without_provenance_keeps_nothing(tmp_path, capsys):
    rng = np.random.default_rng(2)
    _write(tmp_path, ["rings"], 30, 2, rng)
    (tmp_path / "density2d_runs.json").unlink()  # a file from before the split: settings unknown
    assert d2.kept_sets(tmp_path, _args(["moons"])) == ({}, {}, {})
    assert "dropping rings" in capsys.readouterr().err


def test_report_lists_each_sets_command(tmp_path):
    rng = np.random.default_rng(3)
    results = {n: {"dual": _curves(rng), "nf": _curves(rng)} for n in ("rings", "moons")}
    runs = {n: {"command": f"python benchmarks/density2d.py --datasets {n}", "commit": c, "utc": "t"}
            for n, c in (("rings", "aaa1111"), ("moons", "bbb2222"))}
    args = _args(["moons"])
    d2.write_report(results, {"rings": None, "moons": None}, args, 60.0, tmp_path, runs)
    text = (tmp_path / "density2d.md").read_text()
    assert "- rings: `python benchmarks/density2d.py --datasets rings` at commit `aaa1111`" in text
    assert "- moons: `python benchmarks/density2d.py --datasets moons` at commit `bbb2222`" in text
    # one command only: a single Command line, no per-set list
    d2.write_report(results, {"rings": None, "moons": None}, args, 60.0, tmp_path, {n: runs["rings"] for n in runs})
    assert "separate commands" not in (tmp_path / "density2d.md").read_text()


def test_extra_rows_join_a_kept_set_and_are_reported_apart_from_c5(tmp_path, capsys):
    rng = np.random.default_rng(4)
    results, _ = _write(tmp_path, ["rings", "moons"], 30, 2, rng)
    # --extra on moons keeps moons (its dual and NF are what the extra rows join) ...
    kept, maps, runs = d2.kept_sets(tmp_path, _args(["moons"], extra=["dual_base"]))
    assert set(kept) == {"rings", "moons"} and set(kept["moons"]) == {"dual", "nf"}
    # ... but not at other settings: then nothing is there to join
    assert d2.kept_sets(tmp_path, _args(["moons"], steps=40, extra=["dual_base"]))[0] == {}
    err = capsys.readouterr().err  # rings is dropped; moons is the caller's one-line --extra error, not a "dropping"
    assert "dropping rings" in err and "moons" not in err
    kept["moons"]["dual_base"] = _curves(rng)
    runs["moons"]["extra"] = {"dual_base": {"command": "python benchmarks/density2d.py --datasets moons --extra dual_base",
                                            "commit": "ccc3333", "utc": "t"}}
    d2.write_report(kept, {"rings": None, "moons": None}, _args(["moons"], extra=["dual_base"]), 60.0, tmp_path, runs)
    text = (tmp_path / "density2d.md").read_text()
    assert "- moons dual_base: `python benchmarks/density2d.py --datasets moons --extra dual_base` at commit `ccc3333`" in text
    assert "| moons | dual_base |" in text and "- moons: extra row dual_base (" in text
    assert "not decided (2 of 5 sets run)" in text  # C5 counts sets by their dual and NF, not by extra rows
    d2.save_raw(kept, tmp_path)  # the extra curves survive the JSON round trip
    np.testing.assert_allclose(d2.load_raw(tmp_path)["moons"]["dual_base"].test_nll_p, kept["moons"]["dual_base"].test_nll_p)


def test_extra_names_are_checked_at_parse(capsys):
    import pytest

    with pytest.raises(SystemExit):
        d2.parse(["--extra", "dual_base,dual_pathwis"])
    assert "unknown row(s) dual_pathwis" in capsys.readouterr().err
    assert d2.parse(["--extra", "dual_sgd,dual_pathwise"]).extra == ["dual_sgd", "dual_pathwise"]


def test_a_later_plain_run_of_another_set_keeps_the_extra_rows_their_maps_and_records(tmp_path):
    rng = np.random.default_rng(5)
    results, maps = _write(tmp_path, ["moons"], 30, 2, rng)
    results["moons"]["dual_base"] = _curves(rng)
    maps["moons"]["dual_base"] = (rng.normal(size=64 * 64), rng.normal(size=64 * 64))
    record = {"command": "python benchmarks/density2d.py --datasets moons --extra dual_base", "commit": "ccc3333", "utc": "t"}
    runs = json.loads((tmp_path / "density2d_runs.json").read_text())
    runs["moons"]["extra"] = {"dual_base": record}
    d2.save_raw(results, tmp_path)
    d2.save_maps(maps, tmp_path)
    (tmp_path / "density2d_runs.json").write_text(json.dumps(runs))
    kept, kept_maps, kept_runs = d2.kept_sets(tmp_path, _args(["rings"]))  # a plain command that trains rings
    assert set(kept["moons"]) == {"dual", "nf", "dual_base"} and kept_runs["moons"]["extra"] == {"dual_base": record}
    np.testing.assert_allclose(kept["moons"]["dual_base"].test_nll_p, results["moons"]["dual_base"].test_nll_p)
    for a, b in zip(kept_maps["moons"]["dual_base"], maps["moons"]["dual_base"]):
        np.testing.assert_array_equal(a, b)
    # rerunning moons itself (no --extra) starts it afresh: it is not kept, extra rows included
    assert "moons" not in d2.kept_sets(tmp_path, _args(["moons"]))[0]


def test_extra_and_report_only_together_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        d2.parse(["--extra", "dual_base", "--report-only"])
    assert "--report-only trains nothing" in capsys.readouterr().err


def test_figures_draw_the_extra_rows_beside_the_dual_and_nf(tmp_path):
    rng = np.random.default_rng(6)
    results, maps = _write(tmp_path, ["rings", "moons"], 30, 2, rng)
    assert d2.plotted_rows(results) == ["dual", "nf"]
    assert [c[:2] for c in d2.map_columns(maps)] == [("dual p_θ", "dual"), ("dual q̃_ψ", "dual"), ("NF", "nf")]
    # extra rows on one set only: drawn once each, in EXTRA_DUALS order, whatever order they ran in
    for e in ("dual_base", "dual_sgd"):
        results["moons"][e] = _curves(rng)
        maps["moons"][e] = (rng.normal(size=64 * 64), rng.normal(size=64 * 64))
    assert d2.plotted_rows(results) == ["dual", "nf", "dual_sgd", "dual_base"]
    columns = d2.map_columns(maps)
    assert [c[1:] for c in columns[3:]] == [("dual_sgd", 0), ("dual_base", 0)]
    assert set(d2.ROW_COLORS) >= {"dual", "nf", *d2.EXTRA_DUALS}
    np.testing.assert_allclose(d2.row_offsets(2), [-0.125, 0.125])  # the dual and NF where they were before extra rows
    five = d2.row_offsets(5)
    assert np.all(np.diff(five) > 0) and abs(five[0] + five[-1]) < 1e-12 and five[-1] - five[0] < 1.0  # ordered, centred, within a set
    d2.plot(results, maps, tmp_path)  # a set without the extra rows leaves their panels empty
    for f in ("density2d_maps.png", "density2d_nll.png"):
        assert (tmp_path / f).stat().st_size > 0
    (tmp_path / "density2d_maps.png").unlink()
    d2.plot(results, {}, tmp_path)  # no stored maps at all: the NLL figure is still drawn, the maps figure is not
    assert not (tmp_path / "density2d_maps.png").exists() and (tmp_path / "density2d_nll.png").is_file()
