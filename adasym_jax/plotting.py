"""PNG figures of a run: 64×64 density maps (Figure 4b / 7) and training curves (Figures 2–3).

Matplotlib runs with the non-interactive ``Agg`` backend; every function writes a file and
returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

GRID = 64


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_limits(x: np.ndarray, margin: float = 0.15) -> tuple[tuple[float, float], tuple[float, float]]:
    """Square-ish box around the 0.5–99.5 % quantiles of ``x (n, 2)`` with a relative margin."""
    lo, hi = np.quantile(x, 0.005, axis=0), np.quantile(x, 0.995, axis=0)
    pad = margin * (hi - lo) + 1e-3
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def grid_points(xlim: Sequence[float], ylim: Sequence[float], res: int = GRID) -> tuple[np.ndarray, float]:
    """Pixel centers ``(res·res, 2)`` of a ``res × res`` grid (row-major, y then x) and the
    pixel area A."""
    dx, dy = (xlim[1] - xlim[0]) / res, (ylim[1] - ylim[0]) / res
    xs = xlim[0] + dx * (np.arange(res) + 0.5)
    ys = ylim[0] + dy * (np.arange(res) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32), dx * dy


def density_figure(
    data: np.ndarray,
    log_p: np.ndarray,
    log_q: Optional[np.ndarray],
    xlim: Sequence[float],
    ylim: Sequence[float],
    seeds: Optional[Sequence[int]] = None,
    title: str = "",
    max_rows: int = 5,
):
    """The matplotlib figure of :func:`plot_density_maps` (the caller closes it)."""
    plt = _pyplot()
    res = int(round(np.sqrt(log_p.shape[1])))
    _, area = grid_points(xlim, ylim, res)
    rows = min(log_p.shape[0], max_rows)
    cols = 3 if log_q is not None else 2
    aspect = float(np.clip((ylim[1] - ylim[0]) / max(xlim[1] - xlim[0], 1e-9), 0.4, 2.5))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * aspect * rows + 0.8), squeeze=False)
    xs = np.linspace(xlim[0], xlim[1], res)
    ys = np.linspace(ylim[0], ylim[1], res)
    for r in range(rows):
        label = f"seed {seeds[r]}" if seeds is not None else f"run {r}"
        ax = axes[r, 0]
        ax.scatter(data[:, 0], data[:, 1], s=1.5, c="k", alpha=0.5, linewidths=0)
        ax.set_title(f"data ({len(data)} pts)" if r == 0 else "")
        ax.set_ylabel(f"{label}\nx₂")
        panels = [("p_θ", log_p[r])] + ([("q̃_ψ", log_q[r])] if log_q is not None else [])
        for c, (name, lp) in enumerate(panels, start=1):
            v = np.exp(np.clip(np.asarray(lp, np.float64), -700, 700)) * area
            v = np.where(np.isfinite(v), v, 0.0).reshape(res, res)
            filled = axes[r, c].contourf(xs, ys, v, levels=20, cmap="viridis")
            bar = fig.colorbar(filled, ax=axes[r, c], fraction=0.046, pad=0.04)
            bar.set_label("mass per pixel", fontsize=7)
            bar.ax.tick_params(labelsize=6)
            axes[r, c].set_title(name if r == 0 else "")
            axes[r, c].set_ylabel("x₂")
        for ax in axes[r]:
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.tick_params(labelsize=7)
            ax.set_aspect("equal")
            if r == rows - 1:
                ax.set_xlabel("x₁")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_density_maps(
    data: np.ndarray,
    log_p: np.ndarray,
    log_q: Optional[np.ndarray],
    xlim: Sequence[float],
    ylim: Sequence[float],
    path: str | os.PathLike,
    seeds: Optional[Sequence[int]] = None,
    title: str = "",
    max_rows: int = 5,
) -> Path:
    """Data beside the density maps of p_θ and q̃_ψ, one row per seed (as in Figure 4b).

    ``log_p``, ``log_q``: ``(seeds, res·res)`` log-densities at :func:`grid_points` of the
    box ``xlim × ylim``; the axes show these coordinates (the data's, for a run's maps). Each
    pixel shows v = exp(log density) · A (D.2), the probability mass of the pixel, as filled
    contours with a colorbar per map. ``log_q`` may be ``None`` (NF runs have no proxy);
    ``title`` goes above the figure (:func:`plot_run` puts the run's name and step there).
    """
    plt = _pyplot()
    fig = density_figure(data, log_p, log_q, xlim, ylim, seeds, title, max_rows)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _band(ax, steps, arr, label, style="-", color=None):
    arr = np.asarray(arr, np.float64)
    mean = np.nanmean(arr, axis=0)
    (line,) = ax.plot(steps, mean, style, label=label, color=color)
    for row in arr:
        ax.plot(steps, row, style, color=line.get_color(), alpha=0.25, linewidth=0.7)
    return line


def plot_curves(
    metrics: Mapping[str, Any],
    path: str | os.PathLike,
    title: str = "",
    zeta_band: Optional[tuple[float, float]] = None,
) -> Path:
    """Test NLL of p_θ and q̃_ψ, log ζ̂ and the λ's over steps (mean bold, seeds thin).

    ``zeta_band``: ``(lo, hi)`` shaded on the log ζ̂ panel, the band [0, log(1 + ε_ζ)] that
    adasym's constraints ask for (:func:`plot_run` passes it for adasym runs)."""
    plt = _pyplot()
    fig = curves_figure(metrics, title, zeta_band)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def curves_figure(metrics: Mapping[str, Any], title: str = "", zeta_band: Optional[tuple[float, float]] = None):
    """The matplotlib figure of :func:`plot_curves` (the caller closes it)."""
    plt = _pyplot()
    steps = np.asarray(metrics["eval_steps"])
    lambdas = metrics.get("lambdas") or {}
    cols = 3 if lambdas else 2
    fig, axes = plt.subplots(1, cols, figsize=(4.2 * cols, 3.4))
    p = _nanarr(metrics["test_nll_p"])
    q = _nanarr(metrics["test_nll_q"])
    _band(axes[0], steps, p, "p_θ")
    if metrics.get("method") != "nf":
        _band(axes[0], steps, q, "q̃_ψ", "--")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("test NLL (nats per point, data units)")
    axes[0].legend()
    _band(axes[1], steps, _nanarr(metrics["log_zeta"]), "log ζ̂")
    axes[1].axhline(0.0, color="gray", linewidth=0.8)
    if zeta_band is not None:
        lo, hi = zeta_band
        axes[1].axhspan(lo, hi, color="tab:green", alpha=0.2, label=f"band [{lo:g}, {hi:.3g}]")
        axes[1].legend(fontsize=7)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("log ζ̂")
    if lambdas:
        for name, arr in lambdas.items():
            a = _nanarr(arr)
            if np.any(np.nan_to_num(a) > 0):
                _band(axes[2], steps, a, f"λ_{name}")
        axes[2].set_yscale("symlog", linthresh=1e-3)
        axes[2].set_xlabel("step")
        axes[2].set_ylabel("λ")
        axes[2].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _nanarr(a) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in np.asarray(a, dtype=object)], np.float64)


def plot_run(run, data: np.ndarray, metrics: Optional[Mapping[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """Both figures of a :class:`~adasym_jax.results.Run` into ``out_dir``: ``density.png``
    (2-D runs only) and ``curves.png`` (if ``metrics`` is given). Returns the paths written."""
    from adasym_jax.results import evaluate_run

    out = Path(out_dir)
    written = []
    step = int(run.meta.get("step", np.asarray(run.state.step).reshape(-1)[0]))
    name = f"{run.directory.name}: {run.config.method}, step {step}"
    if run.dim == 2 and not run.config.context_dim:
        xlim, ylim = plot_limits(data)
        pts, _ = grid_points(xlim, ylim)
        ev = evaluate_run(run, pts)
        log_q = None if run.config.method == "nf" else ev["log_q"]
        written.append(
            plot_density_maps(data, ev["log_p"], log_q, xlim, ylim, out / "density.png", run.seeds, name + " (data units)")
        )
    if metrics is not None:
        band = (0.0, float(np.log1p(run.config.eps_zeta))) if run.config.method == "adasym" else None
        written.append(plot_curves(metrics, out / "curves.png", name, zeta_band=band))
    return written
