"""PNG figures of a run: 64×64 density maps (Figure 4b / 7) and training curves (Figures 2–3)
of ``adasym train`` runs (:func:`plot_run`), the curves and posterior samples of ``adasym sbi``
runs (:func:`plot_sbi_run`) and the curves of ``adasym latent`` runs (:func:`plot_latent_run`).

Matplotlib runs with the non-interactive ``Agg`` backend; every function writes a file and
returns its path.
"""

from __future__ import annotations

import os
import sys
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


# --------------------------------------------------------------------------------------
# `adasym sbi` and `adasym latent` runs (the figures of `adasym plot`)
# --------------------------------------------------------------------------------------
def sbi_observation(settings: Mapping[str, Any], metrics: Mapping[str, Any]) -> np.ndarray:
    """The observation u₀ an ``adasym sbi`` run recorded (its settings, else its metrics), as
    float32; empty if none. A value that is not a list of numbers raises ``ValueError``."""
    value = settings.get("observation") or metrics.get("observation") or []
    try:
        return np.asarray(value, np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"the recorded observation u₀ is not a list of numbers ({str(value)[:40]!r})") from None


def figure_names(kind: str, dim: int, context_dim: int, settings: Mapping[str, Any], metrics: Optional[Mapping[str, Any]]) -> list[str]:
    """The files that plotting a run of ``kind`` (``"train"``, ``"sbi"`` or ``"latent"``, see
    ``adasym_jax.cli.run_kind``) writes: :func:`plot_run`, :func:`plot_sbi_run` or
    :func:`plot_latent_run`. Known from the run's metadata, before anything is built."""
    if kind == "sbi":
        return ["curves.png"] + (["posterior.png"] if sbi_observation(settings, metrics or {}).size == context_dim else [])
    if kind == "latent":
        return ["curves.png"]
    return (["density.png"] if dim == 2 and not context_dim else []) + (["curves.png"] if metrics is not None else [])


def curve_rows(a) -> np.ndarray:
    """JSON curves (seeds × evaluations, ``null`` = NaN) -> float64 array."""
    rows = a if isinstance(a, list) and a and isinstance(a[0], list) else [a]
    return np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)


def plot_panels(panels, xlabel: str, path: Path, title: str) -> Path:
    """One panel per ``(name, x, {label: seeds × len(x)}, hline)``: the seed mean bold, each seed thin."""
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (name, x, series, hline) in zip(axes.ravel(), panels):
        for label, arr in series.items():
            measured = np.isfinite(arr).any(axis=0)  # evaluations that skipped this quantity drop out
            if measured.any() and not measured.all():
                x_, arr = np.asarray(x)[measured], arr[:, measured]
            else:
                x_ = x
            with np.errstate(all="ignore"):
                mean = np.nanmean(arr, axis=0) if np.any(np.isfinite(arr)) else np.full(arr.shape[1], np.nan)
            (line,) = ax.plot(x_, mean, label=label)
            if arr.shape[0] > 1:
                for row in arr:
                    ax.plot(x_, row, color=line.get_color(), alpha=0.3, linewidth=0.7)
        if hline is not None:
            ax.axhline(hline, color="gray", linewidth=0.8, linestyle=":")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        if len(series) > 1:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_sbi_run(run, metrics: dict[str, Any], out: Path) -> list[Path]:
    """``curves.png`` (C2ST, validation NLL, ζ and λ's over steps) and ``posterior.png``
    (samples of p_θ(β | u₀) at the run's observation, one panel per seed)."""
    import jax

    from adasym_jax.results import sample_run

    steps = np.asarray(metrics["eval_steps"], np.float64)
    curves = metrics.get("curves") or {}
    panels = [("C2ST at u₀ (paper protocol; 0.5 = ideal)", steps, {"C2ST": curve_rows(metrics["c2st"]["paper"]["curve"])}, 0.5)]
    for key, name, hline in (("val_nll", "validation NLL of p_θ (nats)", None), ("fw_nll", "training NLL of p_θ", None),
                             ("log_zeta", "log ζ̂", 0.0), ("zeta_mean", "mean ζ(u)", 1.0)):
        if key in curves:
            panels.append((name, steps, {key: curve_rows(curves[key])}, hline))
    lambdas = {k: curve_rows(v) for k, v in curves.items() if k.startswith("lambda_") and np.any(np.nan_to_num(curve_rows(v)) > 0)}
    if lambdas:
        panels.append(("multipliers λ", steps, lambdas, None))
    name = f"{run.directory.name}: {metrics.get('task', 'sbi')} {run.config.method}, step {int(steps[-1]) if steps.size else 0}"
    written = [plot_panels(panels, "step", out / "curves.png", name)]

    u0 = sbi_observation(run.settings, metrics)
    if u0.size != run.config.context_dim:
        print(f"{run.directory}: no observation u₀ recorded; plotted the curves only", file=sys.stderr)
        return written
    samples = sample_run(run, 1000, jax.random.PRNGKey(0), "p", u0)
    plt = _pyplot()
    cols = min(len(run.seeds), 5)
    fig, axes = plt.subplots(1, cols, figsize=(3.2 * cols, 3.4), squeeze=False)
    for c in range(cols):
        ax, smp = axes[0, c], samples[c]
        if run.dim == 1:
            ax.hist(smp[:, 0], bins=50, color="k", alpha=0.7)
            ax.set_xlabel("β₁")
        else:
            ax.scatter(smp[:, 0], smp[:, 1], s=2, c="k", alpha=0.4, linewidths=0)
            ax.set_xlabel("β₁")
            ax.set_ylabel("β₂")
        ax.set_title(f"seed {run.seeds[c]}")
    dims = "" if run.dim <= 2 else f" (dims 1-2 of {run.dim})"
    u_text = ",".join(f"{v:.3g}" for v in u0)
    fig.suptitle(f"{run.directory.name}: p_θ(β | u₀ = {u_text}){dims}")
    fig.tight_layout()
    fig.savefig(out / "posterior.png", dpi=90)
    plt.close(fig)
    written.append(out / "posterior.png")
    return written


def plot_latent_run(run, metrics: dict[str, Any], out: Path) -> list[Path]:
    """``curves.png``: every evaluated quantity of ``metrics["evals"]`` over epochs."""
    epochs = np.asarray(metrics["eval_epochs"], np.float64)
    names = {"test_nll_p": "test NLL of p_θ (latents, nats)", "test_nll_q": "test NLL of q̃_ψ (latents)", "log_zeta": "log ζ̂"}
    panels = []
    for key, d in metrics["evals"].items():
        if key in ("test_nll_q", "log_zeta") and run.config.method == "nf":
            continue
        panels.append((names.get(key, key), epochs, {key: curve_rows(d["curve"])}, 0.0 if key == "log_zeta" else None))
    if not panels:
        raise ValueError(f"{run.directory}: metrics.json has no evaluations to plot")
    name = f"{run.directory.name}: latent {run.config.method}, {metrics.get('steps', '?')} steps"
    return [plot_panels(panels, "epoch", out / "curves.png", name)]
