"""The first picture a user sees (issue 15 item 4): README's main job and a user's own 2-D data.

Runs, one after the other, the README demo (``adasym train --out DIR``: moons, the paper's D.1
method and model, 2 seeds) and ``adasym train --data ring.npy`` on a noisy ring of 2000 points
at (5, 5) with the command's defaults for user data, then records wall time, test NLL, the last
log ζ̂ against its band, and how much of each density's mass lies near the data on the plot's
64 × 64 grid. Writes ``benchmarks/results/demo.md`` (+ JSON) and copies both density maps there.

    python benchmarks/demo.py                       # ≈ 5 min on 2 cores
    python benchmarks/demo.py --steps 50 --tiny     # checks the script
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def ring(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    r = 3.0 + 0.3 * rng.normal(size=n)
    return np.stack([5 + r * np.cos(t), 5 + r * np.sin(t)], 1).astype(np.float32)


def near_mass(run_dir: Path, data: np.ndarray) -> dict:
    from adasym_jax.plotting import grid_points, plot_limits
    from adasym_jax.results import evaluate_run, load_run

    run = load_run(run_dir)
    xlim, ylim = plot_limits(data)
    grid, _ = grid_points(xlim, ylim, 64)
    scale = max(xlim[1] - xlim[0], ylim[1] - ylim[0])
    d = np.min(np.linalg.norm(grid[:, None, :] - data[None, :1000, :], axis=-1), axis=1)
    dens = evaluate_run(run, grid)
    out = {}
    for r in (0.02, 0.1):
        near = d < r * scale
        out[f"area_within_{r}"] = float(near.mean())
        for name in ("log_p", "log_q"):
            ld = np.asarray(dens[name])
            w = np.exp(ld - ld.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            out[f"{name}_mass_within_{r}"] = [round(float(v), 3) for v in (w * near).sum(1)]
    return out


def run_case(name: str, args: list[str], data: np.ndarray, tmp: Path) -> dict:
    out = tmp / name
    cmd = [sys.executable, "-m", "adasym_jax.cli", "train", "--out", str(out), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed: {proc.stderr.strip().splitlines()[-1]}")
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text()).get("config", {})
    eps = float(cfg.get("eps_zeta", 0.1))
    log_zeta = [float(v[-1]) for v in metrics["log_zeta"]]
    row = {
        "case": name,
        "command": "adasym train --out DIR " + " ".join(a if not a.endswith(".npy") else "ring.npy" for a in args),
        "wall_seconds": round(wall, 1),
        "compile_seconds": round(float(metrics.get("compile_seconds", float("nan"))), 1),
        "steps_per_second": round(float(metrics.get("steps_per_second", float("nan"))), 1),
        "last_test_nll_p": [round(float(v), 3) for v in metrics["last_test_nll_p"]],
        "last_test_nll_q": [round(float(v), 3) for v in metrics["last_test_nll_q"]],
        "log_zeta_last": None if log_zeta is None else [round(v, 3) for v in log_zeta],
        "zeta_band": [0.0, round(math.log1p(eps), 4)],
        "stderr_warnings": [ln for ln in proc.stderr.splitlines() if "warning" in ln],
        **near_mass(out, data),
    }
    png = out / "density.png"
    if png.is_file():
        shutil.copy(png, RESULTS / f"demo_{name}.png")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, help="override the step count of both cases (default: the command's own)")
    p.add_argument("--tiny", action="store_true", help="write to a temporary folder, not benchmarks/results")
    args = p.parse_args(argv)
    global RESULTS
    if args.tiny:
        RESULTS = Path(tempfile.mkdtemp())
    RESULTS.mkdir(parents=True, exist_ok=True)
    from adasym_jax.data import load_dataset

    extra = ["--steps", str(args.steps), "--eval-every", str(max(1, args.steps // 2))] if args.steps else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        moons, _ = load_dataset("moons")
        rows.append(run_case("readme_demo", extra, moons, tmp))
        print(json.dumps(rows[-1]), flush=True)
        data = ring()
        np.save(tmp / "ring.npy", data)
        rows.append(run_case("user_ring", ["--data", str(tmp / "ring.npy"), *extra], data, tmp))
        print(json.dumps(rows[-1]), flush=True)
    import jax

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"command": "python benchmarks/demo.py " + " ".join(argv if argv is not None else sys.argv[1:]), "commit": commit, "device": str(jax.devices()[0]), "jax": jax.__version__}
    (RESULTS / "demo.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# The first picture: README's demo and a user's own 2-D data (issue 15 item 4)",
        "",
        f"`{meta['command'].strip()}` — commit {commit}, {meta['device']}, JAX {meta['jax']}, run alone on the machine. "
        "Each case is the `adasym train` command shown, with the library's defaults (the paper's D.1 method: Adam on λ, "
        "the autoregressive flow 5 × 8 bins, EBM 6 × 64, M = 1000, LR θ 1e-3, ψ 1e-4, λ 1e-4, λ_ζ 1e-3). Wall time "
        "includes start-up and compilation. 'Mass near' = share of the density's mass on the plot's 64 × 64 grid "
        "within 2 % (and 10 %) of the plot's size from a data point, against the share of the grid's area there.",
        "",
        "| case | command | wall s | test NLL p_θ | test NLL q̃_ψ | last log ζ̂ (band) | p_θ / q̃_ψ mass within 2 % (area) | mass beyond 10 % (area) |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        beyond_p = [round(1 - v, 3) for v in r["log_p_mass_within_0.1"]]
        beyond_q = [round(1 - v, 3) for v in r["log_q_mass_within_0.1"]]
        lines.append(
            f"| {r['case']} | `{r['command']}` | {r['wall_seconds']} | {r['last_test_nll_p']} | {r['last_test_nll_q']} | "
            f"{r['log_zeta_last']} ({r['zeta_band']}) | {r['log_p_mass_within_0.02']} / {r['log_q_mass_within_0.02']} "
            f"({r['area_within_0.02']:.2f}) | {beyond_p} / {beyond_q} ({1 - r['area_within_0.1']:.2f}) |"
        )
    lines += ["", "Density maps: `demo_readme_demo.png`, `demo_user_ring.png`."]
    (RESULTS / "demo.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'demo.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
