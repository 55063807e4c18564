"""benchmarks/gmm40.py fills the P-W grid over several commands: ``--pw-pairs`` parses and checks
the pairs, and ``merge_members`` joins two groups' rows in grid order, each row staying with its
member, padding a group that stopped early with NaN. Unit level: fake curves, no training."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gmm40  # noqa: E402
from _bench2d import Curves  # noqa: E402

from adasym_jax.baselines import GridMember  # noqa: E402


def _group(members, evals, sps=2.0):
    """Curves whose every value encodes its member (w_fw * 10 + w_rv), so rows can be traced."""
    tag = np.asarray([[g.w_fw * 10 + g.w_rv] for g in members], np.float64)
    vals = np.repeat(tag, evals, axis=1)
    return Curves("pw", np.arange(1, evals + 1) * 100, vals, vals + 0.5, -vals, {"fw": vals * 2},
                  np.asarray([-1] * len(members)), sps, 3.0, None)


def test_parse_pairs_grid_order_and_errors():
    assert gmm40.parse_pairs("5:1,0.2:0.2") == [(0.2, 0.2), (5.0, 1.0)]
    assert len(gmm40.parse_pairs("all")) == 25
    for bad in ("3:1", "5-1", ""):
        with pytest.raises(ValueError):
            gmm40.parse_pairs(bad)


def test_merge_keeps_rows_with_members_in_grid_order():
    old_m = [GridMember(0, 5.0, 1.0, 1.0), GridMember(0, 0.2, 0.2, 1.0)]
    new_m = [GridMember(0, 1.0, 0.2, 1.0)]
    merged, members = gmm40.merge_members(_group(old_m, 3, 2.0), old_m, _group(new_m, 3, 2.0), new_m)
    assert [(g.w_fw, g.w_rv) for g in members] == [(0.2, 0.2), (1.0, 0.2), (5.0, 1.0)]
    for i, g in enumerate(members):
        tag = g.w_fw * 10 + g.w_rv
        np.testing.assert_allclose(merged.test_nll_p[i], tag)
        np.testing.assert_allclose(merged.test_nll_q[i], tag + 0.5)
        np.testing.assert_allclose(merged.log_zeta[i], -tag)
        np.testing.assert_allclose(merged.lambdas["fw"][i], 2 * tag)
    # run one after the other at 2 steps/s each: the grid ran at 1 step/s
    assert merged.steps_per_second == pytest.approx(1.0)


def test_merge_pads_a_group_that_stopped_early():
    old_m, new_m = [GridMember(0, 0.2, 5.0, 1.0)], [GridMember(0, 5.0, 5.0, 1.0)]
    merged, _ = gmm40.merge_members(_group(old_m, 4), old_m, _group(new_m, 2), new_m)
    np.testing.assert_array_equal(merged.eval_steps, [100, 200, 300, 400])
    assert np.all(np.isfinite(merged.test_nll_p[0])) and np.all(np.isnan(merged.test_nll_p[1, 2:]))
    shifted = _group(new_m, 2)
    shifted.eval_steps = shifted.eval_steps + 50  # another eval_every: not mergeable
    with pytest.raises(ValueError):
        gmm40.merge_members(_group(old_m, 4), old_m, shifted, new_m)


def test_skip_names_are_checked_and_every_extra_row_changes_one_valid_field(capsys):
    with pytest.raises(SystemExit):
        gmm40.parse(["--skip", "pw,dual_pathwis"])
    assert "unknown group(s) dual_pathwis" in capsys.readouterr().err
    base = gmm40.presets.gmm40().config
    for name, (change, _) in gmm40.EXTRA_DUALS.items():
        cfg = base.replace(**change)  # a bad field or value raises here
        assert name in gmm40.GROUPS and cfg != base and cfg.method == base.method == "adasym"
