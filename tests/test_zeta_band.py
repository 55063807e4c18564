"""log ζ̂ and its band [0, log(1 + ε_ζ)]: a line at the end of a run that leaves it, the band on
curves.png, and density maps with axes, colorbars and a title (issue 12 item 7)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from adasym_jax import cli
from adasym_jax.config import TrainConfig
from adasym_jax.plotting import _pyplot, curves_figure, density_figure, grid_points

TINY = [
    "--set", "ebm_blocks=1", "ebm_hidden=8", "num_transforms=2", "num_bins=4", "flow_hidden=8",
    "num_zeta_samples=32", "eval_zeta_samples=64",
]  # fmt: skip


def _metrics(last_log_zeta, seeds=None):
    last = np.asarray(last_log_zeta, np.float64)
    curve = np.stack([np.full_like(last, 3.0), last], axis=1)  # only the last evaluation counts
    return {"seeds": seeds or list(range(len(last))), "log_zeta": curve.tolist()}


def test_zeta_band_line_only_when_the_last_log_zeta_leaves_the_band():
    cfg = TrainConfig(eps_zeta=0.1)
    hi = math.log1p(0.1)
    assert cli.zeta_band(0.1) == (0.0, pytest.approx(hi))
    # inside, and at the edges within the tolerance
    assert cli.zeta_band_line(_metrics([0.0, 0.05, hi, -0.005, hi + 0.005]), cfg) is None
    below = cli.zeta_band_line(_metrics([0.05, -0.5], seeds=[3, 7]), cfg)
    assert below is not None and "\n" not in below
    assert below.startswith("adasym: warning: log ζ̂ ended outside its band [0, 0.0953]")
    assert "seed(s) 7 " in below and "-0.500" in below and "0.050" not in below
    assert "docs/decisions.md" in below and "zeta_diagnosis.md" in below
    above = cli.zeta_band_line(_metrics([hi + 0.2]), cfg)
    assert above is not None and "0.295" in above
    assert cli.zeta_band_line({"seeds": [0], "log_zeta": [[None]]}, cfg) is not None  # NaN: not in the band
    # eps_zeta = 0: the band is the single point 0
    assert cli.zeta_band_line(_metrics([0.05]), TrainConfig(eps_zeta=0.0)) is not None
    # methods without the ζ constraints have no band to leave
    assert cli.zeta_band_line(_metrics([-3.0]), TrainConfig(method="weighted")) is None
    assert cli.zeta_band_line(_metrics([-3.0]), TrainConfig(method="nf")) is None


def test_a_run_that_ends_outside_the_band_says_so_once(tmp_path, capsys):
    out = tmp_path / "r"
    code = cli.main(["train", "--dataset", "moons", "--n-train", "64", "--n-test", "32", "--steps", "4",
                     "--eval-every", "2", "--seeds", "2", "--out", str(out), "--quiet", "--no-plots", *TINY])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    last = np.array([row[-1] for row in json.loads((out / "metrics.json").read_text())["log_zeta"]])
    hi = math.log1p(TrainConfig().eps_zeta)
    assert np.all(last > hi + cli.ZETA_BAND_TOL), last  # 4 steps from the start: ζ̂ far above 1 + ε_ζ
    lines = [ln for ln in err.splitlines() if "outside its band" in ln]
    assert len(lines) == 1, err
    for v in last:
        assert f"{v:.3f}" in lines[0]


def test_curves_figure_shades_the_band_on_the_log_zeta_panel():
    plt = _pyplot()
    m = {"eval_steps": [1, 2], "test_nll_p": [[2.0, 1.9]], "test_nll_q": [[2.1, 2.0]], "log_zeta": [[0.3, 0.2]],
         "lambdas": {}, "method": "adasym"}  # fmt: skip
    fig = curves_figure(m, "t", zeta_band=(0.0, 0.0953))
    try:
        ax = fig.axes[1]
        bands = [p for p in ax.patches if p.get_label().startswith("band")]
        assert len(bands) == 1
        verts = bands[0].get_transform().transform(bands[0].get_path().vertices)
        ys = ax.transData.inverted().transform(verts)[:, 1]
        assert ys.min() == pytest.approx(0.0, abs=1e-9) and ys.max() == pytest.approx(0.0953, abs=1e-9)
    finally:
        plt.close(fig)
    fig = curves_figure(m)
    try:
        assert not [p for p in fig.axes[1].patches if p.get_label().startswith("band")]
    finally:
        plt.close(fig)


def test_density_maps_have_data_axes_colorbars_and_the_title():
    plt = _pyplot()
    xlim, ylim = (3.0, 9.0), (2.0, 8.0)
    pts, _ = grid_points(xlim, ylim, 8)
    log_p = np.stack([-0.5 * np.sum((pts - 5.5) ** 2, axis=1)] * 2)
    data = np.random.default_rng(0).normal(5.5, 1.0, size=(50, 2))
    fig = density_figure(data, log_p, log_p - 0.1, xlim, ylim, seeds=[4, 9], title="ring: adasym, step 300")
    try:
        assert fig._suptitle is not None and fig._suptitle.get_text() == "ring: adasym, step 300"
        maps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(maps) == 6 and len(bars) == 4  # one colorbar per density map (p and q̃, 2 seeds)
        assert all(b.get_ylabel() == "mass per pixel" for b in bars)
        for ax in maps:
            assert ax.get_xlim() == pytest.approx(xlim) and ax.get_ylim() == pytest.approx(ylim)
            assert len(ax.get_xticks()) > 1  # ticks in the data's coordinates, not hidden
        assert [ax.get_xlabel() for ax in maps[-3:]] == ["x₁"] * 3
        assert maps[0].get_ylabel() == "seed 4\nx₂" and maps[3].get_ylabel() == "seed 9\nx₂"
    finally:
        plt.close(fig)
