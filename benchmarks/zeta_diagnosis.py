"""Why does ζ̂ not settle in [1, 1 + ε_ζ] on the 40-GMM? Measure ζ itself, not its estimate.

In 2D the partition function ζ_ψ = ∫ exp f_ψ(x) dx can be computed by quadrature, which gives
an independent truth for the Monte Carlo estimate ζ̂_M = mean_j exp(f(y_j)) / p_θ(y_j), y_j ~ p_θ
(Algorithm 2) that training (M = 1000) and evaluation use. For each variant this script trains
the dual with the D.1 settings and, every ``--check-every`` steps and for every seed, records

  * ζ by quadrature on three nested boxes (data box [-1, 2]² at spacing 0.003, [-5, 5]² at 0.01,
    [-50, 50]² at 0.1), cumulative, so mass far from the data shows as growth from box to box;
    the same quadrature of the flow's density (which integrates to 1) checks the grids;
  * the distribution of ζ̂_M over independent repeats: M = 1000 (256 repeats) and M = 10⁵
    (8 repeats): median, mean, and the share inside [1, 1 + ε_ζ];
  * the training estimates ζ̂ (M = ``num_zeta_samples``) of the steps since the last check
    (median and mean) and the ζ multipliers at the check.

Variants (a measurement, not a tuning sweep): ``sgd`` = the defaults (plain projected ascent on
λ, Algorithm 1), ``adam`` = ``dual_optimizer=adam``, ``m10k`` = ``num_zeta_samples=10000``.

    python benchmarks/zeta_diagnosis.py                       # 3000 steps, 2 seeds, 3 variants
    python benchmarks/zeta_diagnosis.py --steps 10000 --variants sgd
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import adasym_jax as aj
from adasym_jax.config import parse_override
from adasym_jax.objective import log_zeta_estimate
from adasym_jax.runner import tuned_jit

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"sgd": [], "adam": ["dual_optimizer=adam"], "m10k": ["num_zeta_samples=10000"]}
# (half-width or box, spacing): cumulative nested boxes; each ring excludes the box inside it.
BOXES = (((-1.0, 2.0), 0.003), ((-5.0, 5.0), 0.01), ((-50.0, 50.0), 0.1))
CHUNK = 250_000


def _grid(lo: float, hi: float, h: float) -> np.ndarray:
    c = np.arange(lo + h / 2, hi, h, dtype=np.float32)
    return np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)


def ring_points() -> list[tuple[np.ndarray, float]]:
    """Cell centres of each ring (box minus the previous box) with the cell area."""
    rings, inner = [], None
    for (lo, hi), h in BOXES:
        pts = _grid(lo, hi, h)
        if inner is not None:
            (a, b) = inner
            inside = np.all((pts > a) & (pts < b), axis=1)
            pts = pts[~inside]
        rings.append((pts, h * h))
        inner = (lo, hi)
    return rings


def make_log_integrand(trainer: aj.Trainer):
    """Compiled (state of one seed, points (CHUNK, 2)) -> (f_ψ, log p_θ) at the points."""
    flow, ebm = trainer.flow, trainer.ebm

    def fn(s, x):
        v = {"params": s.ebm_params, "spectral": s.ebm_stats}
        return ebm.apply(v, x), flow.apply({"params": s.flow_params}, x, method="log_prob")

    return tuned_jit(fn)


def quadrature(fn, s, rings) -> dict[str, list[float]]:
    """Cumulative log ∫ exp f and ∫ p_θ over the nested boxes."""
    log_zeta, mass, acc_z, acc_p = [], [], -np.inf, 0.0
    for pts, area in rings:
        for i in range(0, len(pts), CHUNK):
            part = pts[i : i + CHUNK]
            pad = CHUNK - len(part)
            f, lp = fn(s, jnp.asarray(np.pad(part, ((0, pad), (0, 0)))))
            f, lp = np.asarray(f, np.float64)[: len(part)], np.asarray(lp, np.float64)[: len(part)]
            acc_z = np.logaddexp(acc_z, np.logaddexp.reduce(f) + np.log(area))
            acc_p += np.exp(lp).sum() * area
        log_zeta.append(float(acc_z))
        mass.append(float(acc_p))
    return {"log_zeta_quad": log_zeta, "flow_mass": mass}


def make_rays(trainer: aj.Trainer, num_dirs: int = 64, radii=(10.0, 100.0, 1000.0)):
    """Compiled (state of one seed) -> f_ψ(r u) for ``num_dirs`` unit directions u and the
    given radii, shape ``(len(radii), num_dirs)``. An MLP with SiLU is asymptotically linear
    along a ray, so a positive slope between the two largest radii in some direction means
    exp f is not integrable there (and f is Lipschitz, so a cone around it too): ζ = ∞."""
    ebm = trainer.ebm
    ang = 2 * np.pi * np.arange(num_dirs) / num_dirs
    u = np.stack([np.cos(ang), np.sin(ang)], -1).astype(np.float32)
    pts = jnp.asarray(np.concatenate([r * u for r in radii]))

    def fn(s):
        return ebm.apply({"params": s.ebm_params, "spectral": s.ebm_stats}, pts).reshape(len(radii), num_dirs)

    return tuned_jit(fn), radii


def make_mc(trainer: aj.Trainer, m: int, repeats: int):
    flow, ebm = trainer.flow, trainer.ebm

    def fn(s, key):
        y, lp = flow.apply({"params": s.flow_params}, key, m * repeats, method="sample_and_log_prob")
        lq = ebm.apply({"params": s.ebm_params, "spectral": s.ebm_stats}, y)
        return log_zeta_estimate(lq.reshape(repeats, m), lp.reshape(repeats, m))

    return tuned_jit(fn)


def run_variant(name: str, steps: int, check_every: int, seeds: int, eps_zeta: float) -> dict:
    train, _ = aj.load_dataset("gmm40")
    cfg = aj.TrainConfig()
    for o in VARIANTS[name]:
        cfg = parse_override(o, cfg)
    tr = aj.Trainer(cfg, 2)
    state = tr.init(seeds)
    x = jnp.asarray(train)
    rings = ring_points()
    integrand = make_log_integrand(tr)
    mc = {1000: make_mc(tr, 1000, 256), 100_000: make_mc(tr, 100_000, 8)}
    rays, radii = make_rays(tr)
    checks = []
    t0 = time.time()
    train_seconds = 0.0
    for done in range(check_every, steps + 1, check_every):
        t1 = time.time()
        state, metrics = tr.run(state, x, check_every)
        jax.block_until_ready(state)
        train_seconds += time.time() - t1
        lz_train = np.asarray(metrics["log_zeta"])  # (seeds, check_every)
        for s_i in range(seeds):
            s = jax.tree.map(lambda a: a[s_i], state)
            row = {"step": done, "seed": s_i, **quadrature(integrand, s, rings)}
            f_r = np.asarray(rays(s), np.float64)
            slope = (f_r[-1] - f_r[-2]) / (radii[-1] - radii[-2])
            row["rays"] = {"max_f": [float(v) for v in f_r.max(axis=1)], "max_slope": float(slope.max()),
                           "share_rising": float(np.mean(slope > 0))}
            for m, f in mc.items():
                lz = np.asarray(f(s, jax.random.PRNGKey(1000 + done)), np.float64)
                z = np.exp(lz)
                row[f"mc{m}"] = {
                    "median_log_zeta": float(np.median(lz)),
                    "log_mean_zeta": float(np.log(z.mean())),
                    "share_in_band": float(np.mean((z >= 1.0) & (z <= 1.0 + eps_zeta))),
                }
            zt = np.exp(lz_train[s_i].astype(np.float64))
            row["train"] = {
                "median_log_zeta": float(np.median(np.log(zt))),
                "log_mean_zeta": float(np.log(zt.mean())),
                "share_in_band": float(np.mean((zt >= 1.0) & (zt <= 1.0 + eps_zeta))),
            }
            row["lambda_zeta_u"] = float(np.asarray(metrics["lambda_zeta_u"])[s_i, -1])
            row["lambda_zeta_l"] = float(np.asarray(metrics["lambda_zeta_l"])[s_i, -1])
            checks.append(row)
            print(json.dumps({"variant": name, **row}), flush=True)
    return {"variant": name, "overrides": VARIANTS[name], "checks": checks,
            "train_seconds": train_seconds, "wall_seconds": time.time() - t0}


def report(d: dict) -> str:
    (b1, h1), (b2, h2), (b3, h3) = BOXES
    lines = [
        "# Is ζ in its band? Quadrature against the Monte Carlo estimate (40-GMM, D.1 settings)",
        "",
        f"Command: `{d['command']}`  ",
        f"Device: {d['device']}; wall {d['wall_seconds'] / 60:.1f} min (the CPU was shared with other benchmark jobs).  ",
        f"Quadrature boxes (cumulative): {b1} at spacing {h1}, {b2} at {h2}, {b3} at {h3}. "
        "ζ̂_M = Algorithm 2 with M flow samples; 'median'/'mean' are over independent repeats "
        "(M = 1000: 256 repeats, M = 10⁵: 8), 'train' over the training steps since the previous check. "
        f"Band = [1, 1 + ε_ζ] = [1, {1 + d['eps_zeta']:g}].",
        "",
        "| variant | step | seed | log ζ quad (data box / ±5 / ±50) | ∫p_θ on ±50 | max f at r = 10 / 100 / 1000 (rays rising) | log ζ̂ M=1000 median / log mean | in band | log ζ̂ M=10⁵ median / log mean | train log ζ̂ median / log mean | train in band | λ_ζu / λ_ζl |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in d["variants"]:
        for r in v["checks"]:
            q = " / ".join(f"{a:.2f}" for a in r["log_zeta_quad"])
            a, b, t = r["mc1000"], r["mc100000"], r["train"]
            lines.append(
                f"| {v['variant']} | {r['step']} | {r['seed']} | {q} | {r['flow_mass'][-1]:.3f} | "
                f"{' / '.join(f'{a:.1f}' for a in r['rays']['max_f'])} ({100 * r['rays']['share_rising']:.0f} %) | "
                f"{a['median_log_zeta']:.2f} / {a['log_mean_zeta']:.2f} | {100 * a['share_in_band']:.0f} % | "
                f"{b['median_log_zeta']:.2f} / {b['log_mean_zeta']:.2f} | {t['median_log_zeta']:.2f} / {t['log_mean_zeta']:.2f} | "
                f"{100 * t['share_in_band']:.0f} % | {r['lambda_zeta_u']:.2f} / {r['lambda_zeta_l']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--check-every", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--variants", default="sgd,adam,m10k")
    ap.add_argument("--from-json", type=Path, nargs="*", help="only rewrite the Markdown from saved JSON(s), merged")
    ap.add_argument("--out", type=Path, default=RESULTS / "zeta_diagnosis", help="output path without extension")
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.steps < args.check_every:
        ap.error("--steps must be >= --check-every")
    out_json, out_md = args.out.with_suffix(".json"), args.out.with_suffix(".md")
    if args.from_json:
        parts = [json.loads(p.read_text()) for p in args.from_json]
        d = {**parts[0], "variants": [v for p in parts for v in p["variants"]],
             "command": " ; ".join(p["command"] for p in parts), "wall_seconds": sum(p["wall_seconds"] for p in parts)}
    else:
        t0 = time.time()
        eps = aj.TrainConfig().eps_zeta
        d = {
            "command": "python benchmarks/zeta_diagnosis.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
            "device": f"{jax.devices()[0].platform} ({platform.machine()}), jax {jax.__version__}",
            "eps_zeta": eps,
            "variants": [],
        }
        for n in names:
            d["variants"].append(run_variant(n, args.steps, args.check_every, args.seeds, eps))
            d["wall_seconds"] = time.time() - t0
            out_json.write_text(json.dumps(d, indent=1))
    out_md.write_text(report(d))
    print(f"wrote {out_md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
