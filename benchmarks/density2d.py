"""Section 5.2 / Appendix D.2: density estimation on five 2D sets, dual vs NF.

For each of rings, gmm_grid, gmm_ring, spiral, moons (1000 train / 10k test points), the dual
(adasym, D.2 settings, λ₀ = 0.01) and NF (maximum likelihood) train ``--seeds`` seeds each as
one vmapped program; both programs are compiled once and reused across the five sets.
Writes ``density2d.md`` (best and last test NLL, mean ± std; verdict on C5) and the figures
``density2d_maps.png`` (64×64 maps of data, p_θ, q̃_ψ and NF, Figure 4b/7, plus each extra row's p_θ) and
``density2d_nll.png`` (best/last NLL per seed, Figure 4a/7, extra rows beside the dual and NF) to ``--out``.

    python benchmarks/density2d.py                # the scale that fits a 2-core CPU
    python benchmarks/density2d.py --paper-scale  # D.2: 25k steps
    python benchmarks/density2d.py --paper-scale --datasets moons --extra dual_pathwise,dual_base

``--extra`` trains extra rows (the dual with one setting changed, ``EXTRA_DUALS``: plain ascent
on λ, the pathwise θ gradient, a decaying-base EBM) on sets whose dual and NF are already in
``--out`` with the same steps and seeds, and adds them to the table (C5 stays dual against NF).

The spiral (radius up to 10, beyond the splines' [-5, 5]) is standardized, as `adasym train`
does by default; its NLLs are mapped back to data units (Jacobian term), like every other set's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench2d import (  # noqa: E402
    EXTRA_DUALS, Curves, command_line, extra_line, git_commit, machine_line, notes_lines, oracle_nll, pm, provenance,
    provenance_lines, record_lines, train_members,
)

from adasym_jax.checkpoint import Standardization  # noqa: E402
from adasym_jax import presets  # noqa: E402
from adasym_jax.data import DATASETS, load_dataset  # noqa: E402
from adasym_jax.plotting import grid_points, plot_limits  # noqa: E402
from adasym_jax.results import log_densities  # noqa: E402
from adasym_jax.runner import Trainer  # noqa: E402

SETS = ("rings", "gmm_grid", "gmm_ring", "spiral", "moons")
STANDARDIZE = ("spiral",)
DEFAULT = {"steps": 200, "eval_every": 40, "eval_zeta": 2000}
PAPER = {"steps": presets.density2d().run["steps"], "eval_every": 500, "eval_zeta": 10_000}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, help=f"steps per run (default {DEFAULT['steps']}; paper {PAPER['steps']})")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--datasets", default=",".join(SETS))
    p.add_argument("--eval-zeta", type=int, help="flow samples for ζ̂ at evaluation (default 2000; paper scale 10000)")
    p.add_argument("--paper-scale", action="store_true", help="D.2's 25k steps")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--report-only", action="store_true", help="rewrite density2d.md and density2d_nll.png from density2d.json")
    p.add_argument("--extra", default="", help=f"comma-separated extra rows ({', '.join(EXTRA_DUALS)}) to add to --datasets, "
                   "whose dual and NF must already be in --out with the same steps, seeds, eval_every and eval_zeta; only the extra rows train")
    p.add_argument("--work", default="runs/bench/density2d", help="folder of each (set, method)'s resumable checkpoint (saved every 5 min; a rerun with the same settings continues it, a finished one is read back)")
    a = p.parse_args(argv)
    scale = PAPER if a.paper_scale else DEFAULT
    a.steps = a.steps or scale["steps"]
    a.eval_every = a.eval_every or min(scale["eval_every"], a.steps)
    a.eval_zeta = a.eval_zeta or scale["eval_zeta"]
    a.datasets = [d for d in a.datasets.split(",") if d]
    for d in a.datasets:
        if d not in DATASETS:
            p.error(f"unknown dataset {d!r}")
    a.extra = [e for e in a.extra.split(",") if e]
    unknown = [e for e in a.extra if e not in EXTRA_DUALS]
    if unknown:
        p.error(f"--extra: unknown row(s) {', '.join(unknown)}; choose from {', '.join(EXTRA_DUALS)}")
    if a.extra and a.report_only:
        p.error("--extra trains rows and --report-only trains nothing; the report always shows the extra rows already in --out")
    return a


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    t_start = time.time()
    if args.report_only:
        if not (out / "density2d.json").is_file():
            print(f"error: {out / 'density2d.json'} not found; --report-only rewrites a report from it", file=sys.stderr)
            return 2
        results = in_order(load_raw(out))
        runs = load_runs(out)
        if runs:  # the report states the settings the sets ran with, not this command's defaults
            first = next(iter(runs.values()))
            for k in SETTINGS:
                setattr(args, k, first[k])
        oracles = {n: oracle_nll(DATASETS[n].log_prob, load_dataset(n)[1]) for n in results}
        write_report(results, oracles, args, float("nan"), out, runs)
        maps = load_maps(out)
        plot(results, maps or None, out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    # Sets already in --out from earlier commands with the same steps and seeds are kept, so the five
    # sets can run as several commands (one long run at a time) and still make one report.
    results, maps, runs = kept_sets(out, args)
    missing = [n for n in args.datasets if args.extra and n not in results]
    if missing:
        print(f"error: --extra adds rows to sets already in {out / 'density2d.json'} with the same steps, seeds, eval_every and "
              f"eval_zeta; {', '.join(missing)} is not there with these settings: run its dual and NF first (without --extra)", file=sys.stderr)
        return 2
    oracles = {n: oracle_nll(DATASETS[n].log_prob, load_dataset(n)[1]) for n in results}
    base = presets.density2d().config.replace(eval_zeta_samples=args.eval_zeta)  # D.2
    if args.extra:
        trainers = {e: Trainer(base.replace(**EXTRA_DUALS[e][0]), 2) for e in args.extra}
    else:
        trainers = {"dual": Trainer(base, 2), "nf": Trainer(base.replace(method="nf"), 2)}
    for name in args.datasets:
        x, test = load_dataset(name)
        std = Standardization.fit(x) if name in STANDARDIZE else None
        shift = 0.0 if std is None else std.log_det
        xs = x if std is None else np.asarray(std.apply(x), np.float32)
        ts = test if std is None else np.asarray(std.apply(test), np.float32)
        oracles[name] = oracle_nll(DATASETS[name].log_prob, test)
        xlim, ylim = plot_limits(x)
        pts, _ = grid_points(xlim, ylim)
        pts_m = pts if std is None else np.asarray(std.apply(pts), np.float32)
        if not args.extra:  # a fresh set; extra rows join the kept one
            results[name], maps[name] = {}, {"data": x, "xlim": xlim, "ylim": ylim}
        for method, trainer in trainers.items():
            work = Path(args.work) / f"{name}_{method}" if args.work else None
            c = train_members(trainer, trainer.init(args.seeds), xs, ts, args.steps, args.eval_every, f"{name} {method}", resume_dir=work)
            c.test_nll_p = c.test_nll_p + shift
            c.test_nll_q = c.test_nll_q + shift
            results[name][method] = c
            ev = log_densities(trainer, c.state, pts_m)
            maps[name][method] = (ev["log_p"][0] - shift, ev["log_q"][0] - shift)
            if args.extra:  # each extra row's own command and commit, beside the set's
                runs[name].setdefault("extra", {})[method] = provenance()
        if not args.extra:
            runs[name] = {"steps": args.steps, "seeds": args.seeds, "eval_every": args.eval_every, "eval_zeta": args.eval_zeta,
                          **provenance()}
        results = in_order(results)
        # Written after every data set, so an interrupted benchmark still leaves its results.
        write_report(results, oracles, args, time.time() - t_start, out, runs)
        plot(results, maps, out)
        save_raw(results, out)
        save_maps(maps, out)
        (out / "density2d_runs.json").write_text(json.dumps(runs, indent=2))
    return 0


SETTINGS = ("steps", "seeds", "eval_every", "eval_zeta")  # what a kept set must share with this command


def in_order(results: dict) -> dict:
    """The sets in the paper's order (SETS), then any other registered set in the order run."""
    return {n: results[n] for n in [*(n for n in SETS if n in results), *(n for n in results if n not in SETS)]}


def kept_sets(out: Path, args) -> tuple[dict, dict, dict]:
    """The results, maps and provenance of the sets in ``out`` that this command does not train and
    that an earlier command ran with the same steps, seeds, eval_every and eval_zeta; the rest are
    dropped (with a message)."""
    if not (out / "density2d.json").is_file():
        return {}, {}, {}
    raw, runs, maps = load_raw(out), load_runs(out), load_maps(out)
    keep = [n for n in raw if (n not in args.datasets or args.extra) and n in runs and n in maps
            and all(runs[n].get(k) == getattr(args, k) for k in SETTINGS)]
    # a set this command names is retrained, or (--extra) the caller's one-line error when not kept: never a drop
    dropped = [n for n in raw if n not in args.datasets and n not in keep]
    if dropped:
        print(f"density2d: dropping {', '.join(dropped)} from {out} (run with other steps, seeds, eval_every or "
              "eval_zeta than this command, or by a version that did not record them)", file=sys.stderr)
    return {n: raw[n] for n in keep}, {n: maps[n] for n in keep}, {n: runs[n] for n in keep}


def load_runs(out: Path) -> dict:
    """Each set's settings, command, commit and finish time (``density2d_runs.json``; {} if absent)."""
    path = out / "density2d_runs.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_maps(maps: dict, out: Path) -> None:
    """The density maps of every set, so a later command (or ``--report-only``) can redraw them."""
    flat = {}
    for name, m in maps.items():
        flat[f"{name}/data"] = m["data"]
        flat[f"{name}/lim"] = np.asarray([m["xlim"], m["ylim"]], np.float64)
        for method in ("dual", "nf", *EXTRA_DUALS):
            if method in m:
                flat[f"{name}/{method}_p"], flat[f"{name}/{method}_q"] = m[method]
    np.savez_compressed(out / "density2d_maps.npz", **flat)


def load_maps(out: Path) -> dict:
    path = out / "density2d_maps.npz"
    if not path.is_file():
        return {}
    maps: dict = {}
    with np.load(path) as z:
        for key in z.files:
            name, what = key.split("/")
            m = maps.setdefault(name, {})
            if what == "data":
                m["data"] = z[key]
            elif what == "lim":
                m["xlim"], m["ylim"] = tuple(z[key][0]), tuple(z[key][1])
            elif what.endswith("_p"):
                method = what[:-2]
                m[method] = (z[key], z[f"{name}/{method}_q"])
    return maps


def load_raw(out: Path) -> dict[str, dict[str, Curves]]:
    raw = json.loads((out / "density2d.json").read_text())
    arr = lambda v: np.asarray(v, np.float64)  # noqa: E731
    return {
        n: {
            m: Curves(f"{n} {m}", np.asarray(c["eval_steps"]), arr(c["test_nll_p"]), arr(c["test_nll_q"]), arr(c["log_zeta"]),
                      {}, np.asarray(c["diverged_at"]), c["steps_per_second"], c.get("compile_seconds", 0.0), None)
            for m, c in r.items()
        }
        for n, r in raw.items()
    }


def save_raw(results, out: Path) -> None:
    raw = {
        n: {
            m: {
                "eval_steps": c.eval_steps.tolist(),
                "test_nll_p": c.test_nll_p.tolist(),
                "test_nll_q": c.test_nll_q.tolist(),
                "log_zeta": c.log_zeta.tolist(),
                "diverged_at": c.diverged_at.tolist(),
                "steps_per_second": c.steps_per_second,
                "compile_seconds": c.compile_seconds,
            }
            for m, c in r.items()
        }
        for n, r in results.items()
    }
    (out / "density2d.json").write_text(json.dumps(raw, allow_nan=True))


def _previous_wall(path: Path) -> float:
    import re

    m = re.search(r"Wall time (?:so far )?([0-9.]+) min \(compiles included\)", path.read_text()) if path.is_file() else None
    return float(m.group(1)) * 60 if m else float("nan")


def write_report(results, oracles, args, wall, out: Path, runs: Optional[dict] = None) -> None:
    L = ["# Density estimation on five 2D sets (Section 5.2, Figures 4 and 7, Appendix D.2)\n"]
    extras = {f"{n} {m}": rec for n, r in (runs or {}).items() if n in results for m, rec in r.get("extra", {}).items()}
    cmds = {(r.get("command"), r.get("commit")) for n, r in (runs or {}).items() if n in results} | {
        (r.get("command"), r.get("commit")) for r in extras.values()}
    if len(cmds) > 1:
        L.append("The sets ran as separate commands (same steps, seeds, eval_every and eval_zeta); each set's command, "
                 "commit, finish time, device and load average:\n")
        L.extend(provenance_lines({n: runs[n] for n in results if n in runs}))
        if extras:
            L.append("\nExtra rows (each set's dual with one setting changed), added to a set by their own command:\n")
            L.extend(provenance_lines(extras))
        L.append("")
        L.append(f"This file was last written by `{command_line()}` at commit `{git_commit()}`.  ")
        wall = float("nan")  # several commands: compile + training time of all the runs, below
    elif cmds:  # one command: the one recorded with the sets (a --report-only rewrite keeps it)
        L.extend(record_lines([runs[n] for n in results if n in runs][-1]))
    else:
        L.append(f"Command: `{command_line().replace(' --report-only', '')}` at commit `{git_commit()}`  ")
        L.append(machine_line())
    if len(cmds) <= 1 and not np.isfinite(wall):  # keep the wall time an earlier full run wrote, if any
        wall = _previous_wall(out / "density2d.md")
    if not np.isfinite(wall):  # rebuilt from density2d.json: compile + training time of the runs
        wall = sum(c.compile_seconds + c.eval_steps[-1] / c.steps_per_second for r in results.values() for c in r.values())
    L.append(
        f"Scale run: **{args.steps} full-batch steps per run** (the paper: 25,000), test evaluation every "
        f"{args.eval_every} steps on 10,000 test points, {args.seeds} seeds per method and set, 1000 training points. "
        "Models and LRs as D.2 (NSF 5 × 8 bins, EBM 6 blocks × 64, M = 1000, LR θ 1e-3, ψ 1e-4, λ 1e-4, "
        "λ_ζ 1e-3, ε_ζ 0.1, B.7 form, λ₀ = 0.01). The spiral is standardized; NLLs are in data units. "
        f"q̃_ψ's NLL uses ζ̂ from {args.eval_zeta} flow samples. "
        "Paper scale: add `--paper-scale`. "
        + (f"Compile + training time of all sets, added over their commands: {wall / 60:.1f} min.\n" if len(cmds) > 1
           else f"Wall time {wall / 60:.1f} min (compiles included).\n")
    )
    paper_hours = sum(PAPER["steps"] / c.steps_per_second for r in results.values() for c in r.values()) / 3600
    if args.steps < PAPER["steps"]:
        L.append(
            f"Why this scale: at the speeds measured here (steps/s column) the paper's {PAPER['steps']:,} steps for these "
            f"runs would take ≈ {paper_hours:.0f} h of this CPU.\n"
        )
    L.append("| data set | method | best test NLL p_θ | last test NLL p_θ | last test NLL q̃_ψ | true-density NLL | steps/s |")
    L.append("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for method, c in r.items():
            q = pm(c.test_nll_q[:, -1]) if method != "nf" else "–"
            o = f"{oracles[name]:.3f}" if oracles[name] is not None else "–"
            L.append(f"| {name} | {method} | {pm(c.best)} | {pm(c.last)} | {q} | {o} | {c.steps_per_second:.2f} |")
    L.append("\n## Verdict\n")
    ok_mean, ok_spread, lines = 0, 0, []
    for name, r in results.items():
        if "dual" not in r or "nf" not in r:
            continue
        d, nf = r["dual"], r["nf"]
        mean_ok = np.nanmean(d.best) <= np.nanmean(nf.best) and np.nanmean(d.last) <= np.nanmean(nf.last)
        spread_ok = np.nanstd(d.best) <= np.nanstd(nf.best) and np.nanstd(d.last) <= np.nanstd(nf.last)
        ok_mean += mean_ok
        ok_spread += spread_ok
        lines.append(
            f"  - {name}: best {np.nanmean(d.best):.3f} vs {np.nanmean(nf.best):.3f}, last {np.nanmean(d.last):.3f} vs "
            f"{np.nanmean(nf.last):.3f} (dual vs NF); std over seeds of last {np.nanstd(d.last):.3f} vs {np.nanstd(nf.last):.3f} "
            f"→ {'≤' if mean_ok else 'NOT ≤'} in mean, {'smaller' if spread_ok else 'NOT smaller'} spread"
        )
    n = len(lines)
    holds = ok_mean == n and ok_spread == n and n == len(SETS)
    verdict = ("holds" if holds else "does not hold") if n == len(SETS) else f"not decided ({n} of {len(SETS)} sets run)"
    L.append(
        f"- **C5 (on all five sets the dual's best and last NLL are ≤ NF's, with smaller spread over seeds): "
        f"{verdict} at this scale.** Mean condition met on {ok_mean}/{n} sets, "
        f"spread condition on {ok_spread}/{n}:"
    )
    L.extend(lines)
    scale = (
        f"the paper's {PAPER['steps']:,} steps" if args.steps >= PAPER["steps"]
        else f"the scale stated above, {args.steps / PAPER['steps']:.0%} of the paper's {PAPER['steps']:,} steps"
    )
    extra_rows = [extra_line(m, c, r.get("dual"), lead=f"- {name}: extra row")
                  for name, r in results.items() for m, c in r.items() if m in EXTRA_DUALS]
    if extra_rows:
        L.append("\nExtra rows (not in the paper's Figure 4; C5 above is the dual against NF):\n")
        L.extend(extra_rows)
    L.append(
        f"\nThe verdict is for {scale} and {args.seeds} seeds; the "
        "figures `density2d_maps.png` and `density2d_nll.png` show the learned densities and per-seed NLLs."
    )
    L.extend(notes_lines(out / "density2d_notes.md"))
    (out / "density2d.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


def plot(results, maps, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    if maps is not None:
        _plot_maps(results, maps, out, plt)
    _plot_nll(results, names, out, plt)


#: Colours of the rows in density2d_nll.png: the dual and NF as in earlier reports, then the extra rows.
ROW_COLORS = {"dual": "tab:red", "nf": "tab:blue", "dual_sgd": "tab:orange", "dual_pathwise": "tab:green", "dual_base": "tab:purple"}


def extras_in(by_set: dict) -> list[str]:
    """The extra rows (EXTRA_DUALS order) that at least one set has, in ``results`` or ``maps``
    (both map a set's name to a dict keyed by row)."""
    return [e for e in EXTRA_DUALS if any(e in r for r in by_set.values())]


def plotted_rows(results: dict) -> list[str]:
    """The rows drawn in density2d_nll.png: the dual and NF, then each extra row that some set has."""
    return ["dual", "nf", *extras_in(results)]


def row_offsets(n: int) -> list[float]:
    """x-offsets of ``n`` rows around a set's tick in density2d_nll.png. Every set uses the same
    offsets, so a row sits at the same place at every set, even where a set lacks some rows.
    With two rows (the dual and NF) they are ±0.125, as before extra rows existed."""
    width = 0.25 if n == 2 else 0.6
    return [float(v) for v in np.linspace(-width / 2, width / 2, n)]


P_THETA, Q_PSI = 0, 1  # which of a row's two maps, (log p_θ, log q̃_ψ), a panel draws


def map_columns(maps: dict) -> list[tuple[str, str, int]]:
    """The density panels of density2d_maps.png after the data column, as (title, row, P_THETA or
    Q_PSI): the dual's p_θ and q̃_ψ, NF, then the p_θ of each extra row that some set has."""
    return [("dual p_θ", "dual", P_THETA), ("dual q̃_ψ", "dual", Q_PSI), ("NF", "nf", P_THETA),
            *((f"{e} p_θ", e, P_THETA) for e in extras_in(maps))]


def _plot_maps(results, maps, out: Path, plt) -> None:
    names = [n for n in results if n in maps]
    if not names:  # no stored maps for these sets (e.g. --report-only without density2d_maps.npz): nothing to draw
        return
    columns = map_columns({n: maps[n] for n in names})
    fig, axes = plt.subplots(len(names), 1 + len(columns), figsize=(3 * (1 + len(columns)), 3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        m = maps[name]
        xlim, ylim = m["xlim"], m["ylim"]
        _, area = grid_points(xlim, ylim)
        xs, ys = np.linspace(*xlim, 64), np.linspace(*ylim, 64)
        axes[r, 0].scatter(m["data"][:, 0], m["data"][:, 1], s=1, c="k", alpha=0.5, linewidths=0)
        for c, (title, row, which) in enumerate(columns, start=1):
            lp = m.get(row, (None, None))[which]
            if lp is not None:
                v = np.exp(np.clip(lp, -700, 700)) * area
                axes[r, c].contourf(xs, ys, np.nan_to_num(v).reshape(64, 64), levels=20, cmap="viridis")
            if r == 0:
                axes[r, c].set_title(title)
        axes[r, 0].set_ylabel(name)
        if r == 0:
            axes[r, 0].set_title("data")
        for ax in axes[r]:
            ax.set(xlim=xlim, ylim=ylim, xticks=[], yticks=[])
            ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "density2d_maps.png", dpi=80)
    plt.close(fig)


def _plot_nll(results, names, out: Path, plt) -> None:
    rows = plotted_rows(results)
    offsets = row_offsets(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, (key, title) in enumerate((("best", "best test NLL"), ("last", "last test NLL"))):
        labelled = set()
        for i, name in enumerate(names):
            for j, method in enumerate(rows):
                if method in results[name]:
                    vals = getattr(results[name][method], key)
                    axes[k].scatter(np.full(len(vals), i + offsets[j]), vals, color=ROW_COLORS[method], s=14,
                                    label=None if method in labelled else method)
                    labelled.add(method)
        axes[k].set_xticks(range(len(names)))
        axes[k].set_xticklabels(names)
        axes[k].set_title(title + " of p_θ per seed")
        axes[k].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "density2d_nll.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
