"""benchmarks/sbi_npe.py: Figure 6 (C2ST against the number of simulations) drawn from its rows,
each contender's points sorted by N with mean and std over seeds; and its --set overrides. Unit level: no training."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import sbi_npe  # noqa: E402


def _row(contender, n, values, column="c2st_mlp"):
    return {"contender": contender, "key": {"num_simulations": n}, column: values}


def test_c2st_curves_group_by_contender_sorted_by_n():
    rows = [
        _row("ours", 10_000, [0.56, 0.58, 0.60]),
        _row("sbi", 1_000, [0.70, 0.74]),
        _row("ours", 1_000, [0.71, 0.75, 0.73]),
        _row("sbi", 100_000, [0.53, 0.51], column="c2st_paper_u0"),  # another protocol: not in this panel
    ]
    curves = sbi_npe.c2st_curves(rows, "c2st_mlp")
    assert set(curves) == {"ours", "sbi"}
    n, mean, std = curves["ours"]
    np.testing.assert_array_equal(n, [1_000, 10_000])
    np.testing.assert_allclose(mean, [np.mean([0.71, 0.75, 0.73]), np.mean([0.56, 0.58, 0.60])])
    np.testing.assert_allclose(std, [np.std([0.71, 0.75, 0.73]), np.std([0.56, 0.58, 0.60])])
    np.testing.assert_array_equal(curves["sbi"][0], [1_000])
    assert set(sbi_npe.c2st_curves(rows, "c2st_paper_u0")) == {"sbi"}


def test_plot_c2st_writes_a_png(tmp_path):
    rows = [_row("ours", 1_000, [0.7, 0.72]), _row("ours", 10_000, [0.56, 0.57])]
    path = tmp_path / "fig6.png"
    sbi_npe.plot_c2st(rows, "two_moons", sbi_npe.SBI_NPE_REFERENCE["two_moons"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_capped_rows_get_their_own_line_and_a_rerun_replaces_a_point():
    capped = {**_row("dual", 10_000, [0.60, 0.62]), "converged": False, "cap_steps": 4000}
    rows = [capped, _row("dual", 1_000, [0.8, 0.8]), _row("dual", 1_000, [0.7, 0.7])]
    curves = sbi_npe.c2st_curves(rows, "c2st_mlp")
    assert set(curves) == {"dual", "dual, not converged (cap 4000 steps)"}
    np.testing.assert_allclose(curves["dual"][1], [0.7])  # the later of the two rows at N = 1000
    np.testing.assert_array_equal(curves["dual, not converged (cap 4000 steps)"][0], [10_000])


@pytest.mark.parametrize("bad, match", [(["lr_eb=1e-4"], "did you mean 'lr_ebm'"), (["method=nf"], "fixed by --methods"),
                                        (["zeta_refresh_every=2"], "zeta_refresh_every")])
def test_bad_set_overrides_fail_at_parse_in_one_line(bad, match):
    with pytest.raises(SystemExit) as e:
        sbi_npe.parse(["--set", *bad])
    msg = str(e.value.code)
    assert msg.startswith("sbi_npe.py: error:") and match in msg and "\n" not in msg


def test_set_overrides_are_checked_against_the_sbi_preset_and_keep_rows_apart():
    ok = sbi_npe.parse(["--set", "zeta_per_condition=32", "lr_ebm=1e-4"])  # valid only for a conditional model
    assert sbi_npe.our_config(sbi_npe.get_task("two_moons"), "adasym", ok).zeta_per_condition == 32
    plain, diag = sbi_npe.parse([]), sbi_npe.parse(["--set", "lr_ebm=1e-4"])
    assert "overrides" not in sbi_npe.row_key("two_moons", 1000, "adasym", plain)  # rows stored before --set still match
    assert sbi_npe.row_key("two_moons", 1000, "adasym", diag) != sbi_npe.row_key("two_moons", 1000, "adasym", plain)
    assert sbi_npe.row_key("two_moons", 1000, "sbi", diag) == sbi_npe.row_key("two_moons", 1000, "sbi", plain)  # sbi's NPE ignores them


def test_fixed_length_turns_early_stopping_off_and_keeps_rows_apart():
    plain, fixed = sbi_npe.parse([]), sbi_npe.parse(["--fixed-length"])
    assert plain.patience == sbi_npe.NPE["patience"] and fixed.patience is None
    assert sbi_npe.parse(["--fixed-length", "--tiny"]).patience is None  # --tiny's short patience must not bring it back
    assert "fixed_length" not in sbi_npe.row_key("two_moons", 1000, "adasym", plain)  # rows stored before the flag still match
    assert sbi_npe.row_key("two_moons", 1000, "adasym", fixed) != sbi_npe.row_key("two_moons", 1000, "adasym", plain)
    assert sbi_npe.row_key("two_moons", 1000, "sbi", fixed) == sbi_npe.row_key("two_moons", 1000, "sbi", plain)
    row = {"contender": "ours adasym", "converged": None, "c2st_mlp": [0.9], "key": {"num_simulations": 1000}}
    assert "not converged" not in sbi_npe.curve_label(row)  # a fixed-length row is not "not converged"


def test_dual_curves_figure_only_for_fixed_length_dual_rows(tmp_path):
    path = tmp_path / "curves.png"
    early = {"method": "adasym", "key": {"num_simulations": 1000}, "val_curves": [[1.0, 0.5]]}
    assert not sbi_npe.plot_dual_curves([early], path) and not path.exists()
    fixed = dict(early, eval_steps=[5, 10], steps_per_epoch=5,
                 train_curves={"lambda_fw": [[0.01, 0.02]], "lambda_rv": [[0.01, 0.03]], "lambda_prx": [[0.01, 0.01]],
                               "log_zeta": [[0.1, 0.0]], "rv_kl": [[0.3, 0.2]], "prx_nll": [[3.2, 3.0]],
                               "lambda_zeta_u": [[0.0, 0.4]], "lambda_zeta_l": [[0.0, 0.0]]})
    with_set = dict(fixed, key={"num_simulations": 1000, "overrides": ["ebm_base_scale=1.0"]})
    assert sbi_npe.plot_dual_curves([early, fixed, with_set], path) and path.stat().st_size > 0


def test_dual_curves_figure_survives_a_seed_that_diverged(tmp_path):
    row = {"method": "adasym", "key": {"num_simulations": 1000}, "eval_steps": [5, 10, 15], "steps_per_epoch": 5,
           "val_curves": [[1.0, 0.5, 0.4], [1.0]], "val_curves_full": [[1.0, 0.5, 0.4], [1.0, None, None]],
           "train_curves": {"log_zeta": [[0.1, 0.0, 0.0], [0.2, None, None]]}}
    assert sbi_npe.plot_dual_curves([row], tmp_path / "c.png")


def test_results_json_puts_each_curve_on_one_line_and_loads_back_the_same():
    import json

    from _bench2d import compact_json

    data = {"meta": {"seeds": 5, "empty": {}, "none": []}, "rows": [
        {"key": {"n": 10}, "curve": [[0.5, float("nan"), -1e-7], [2.0, 3.0, 1e30]], "epochs": [1, 2, 3],
         "names": ["a", "b"], "nested": [{"x": [1, 2]}, [3, [4, 5]]], "flag": True, "t": (1, 2), "long": [0.1 * i for i in range(100)]}]}
    text = compact_json(data)
    assert json.dumps(json.loads(text), sort_keys=True) == json.dumps(json.loads(json.dumps(data)), sort_keys=True)
    lines = text.splitlines()
    assert '"epochs": [1, 2, 3],' in [ln.strip() for ln in lines]
    assert "[0.5, NaN, -1e-07]," in [ln.strip() for ln in lines]
    assert len(lines) < len(json.dumps(data, indent=2).splitlines()) / 4  # the 100-point curve is one line, not 102


def test_patience_reaches_the_key_and_label_only_when_not_sbis_default():
    plain, long = sbi_npe.parse([]), sbi_npe.parse(["--patience", "50"])
    assert long.patience == 50 and plain.patience == sbi_npe.NPE["patience"]
    for method in ("adasym", "nf", "sbi"):  # sbi's NPE gets it too (stop_after_epochs), so its row is another row
        assert "patience" not in sbi_npe.row_key("two_moons", 1000, method, plain)  # rows stored before the flag still match
        assert sbi_npe.row_key("two_moons", 1000, method, long)["patience"] == 50
    assert sbi_npe.patience_label(plain) == "" and "patience 50 epochs" in sbi_npe.patience_label(long)
    assert sbi_npe.patience_label(sbi_npe.parse(["--fixed-length"])) == ""
    # what sbi's train() gets as stop_after_epochs: nothing for 20 or a fixed-length run (sbi's row ignores --fixed-length)
    assert sbi_npe.custom_patience(plain) is None and sbi_npe.custom_patience(sbi_npe.parse(["--fixed-length"])) is None
    assert sbi_npe.custom_patience(long) == 50


@pytest.mark.parametrize("argv", [["--patience", "0"], ["--patience", "30", "--fixed-length"]])
def test_bad_patience_fails_at_parse(argv, capsys):
    with pytest.raises(SystemExit):
        sbi_npe.parse(argv)
    assert "--patience" in capsys.readouterr().err


def test_render_without_any_c2st_draws_no_figure_6(tmp_path):
    args = sbi_npe.parse(["--name", "nll_only", "--out", str(tmp_path)])
    row = {"contender": "sbi NPE", "method": "sbi", "key": {"num_simulations": 1000}, "train_seconds": 1.0, "compile_seconds": 0.0,
           "total_seconds": 1.0, "epochs": [30], "test_nll": [1.2, 1.3]}
    sbi_npe.write([row], args, tmp_path)
    assert not (tmp_path / "nll_only_c2st.png").exists() and "Figure 6" not in (tmp_path / "nll_only.md").read_text()
    sbi_npe.write([dict(row, c2st_mlp=[0.7, 0.72])], args, tmp_path)  # one scored row: the figure and its line come back
    assert (tmp_path / "nll_only_c2st.png").exists() and "Figure 6" in (tmp_path / "nll_only.md").read_text()


def test_within_prior_keeps_our_rows_apart_and_the_table_shows_the_fraction_inside(tmp_path):
    plain, inside = sbi_npe.parse(["--out", str(tmp_path)]), sbi_npe.parse(["--within-prior", "--out", str(tmp_path), "--name", "ip"])
    for method in ("adasym", "nf"):
        assert "within_prior" not in sbi_npe.row_key("two_moons", 1000, method, plain)  # rows stored before the flag still match
        assert sbi_npe.row_key("two_moons", 1000, method, inside)["within_prior"] is True
    assert sbi_npe.row_key("two_moons", 1000, "sbi", inside) == sbi_npe.row_key("two_moons", 1000, "sbi", plain)  # sbi always rejects
    row = {"contender": "ours nf", "method": "nf", "key": {"num_simulations": 1000}, "train_seconds": 1.0, "compile_seconds": 0.0,
           "total_seconds": 1.0, "epochs": [30, 31], "test_nll": [1.2, 1.3], "prior_acceptance": [0.9, 0.7]}
    old = dict(row, contender="older row")  # a row stored before the column: shows –
    del old["prior_acceptance"]
    sbi_npe.write([row, old], inside, tmp_path)
    lines = (tmp_path / "ip.md").read_text().splitlines()
    table = [ln for ln in lines if ln.startswith("| 1000 |")]
    header = next(ln for ln in lines if ln.startswith("| N |"))
    col = [c.strip() for c in header.split("|")].index("in prior")
    assert [[c.strip() for c in ln.split("|")][col] for ln in table] == [sbi_npe.pm([0.9, 0.7]), "–"]
