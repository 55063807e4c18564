"""Cost of sampling from the autoregressive spline flow against its density, and against the
coupling flow, at 2, 16 and 100 dimensions (issue 15 item 2).

Sampling inverts each autoregressive layer coordinate by coordinate (``dim`` conditioner
passes per layer), while log_prob needs one; a coupling layer needs one either way. Flows of
the D.1 size (5 layers, 8 bins, hidden (64, 64), B = 5) with init-scale random weights; 1000
points; jit-compiled, compile apart, best of ``--repeats`` timings.

    python benchmarks/ar_sampling.py            # ≈ 2 min on 2 cores
    python benchmarks/ar_sampling.py --tiny
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import adasym_jax as aj

RESULTS = Path(__file__).parent / "results"


def _time(fn, *args, repeats: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best * 1e3, compile_s


def measure(kind: str, dim: int, n: int, repeats: int) -> dict:
    config = aj.TrainConfig(flow=kind)
    flow, _ = aj.build_models(config, dim)
    params = flow.init(jax.random.PRNGKey(0), jnp.zeros((1, dim)))["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    x = jax.random.normal(jax.random.PRNGKey(2), (n, dim))
    log_prob = aj.tuned_jit(lambda p, x: flow.apply({"params": p}, x, method="log_prob"))
    grad = aj.tuned_jit(jax.grad(lambda p, x: jnp.mean(flow.apply({"params": p}, x, method="log_prob"))))
    sample = aj.tuned_jit(lambda p, k: flow.apply({"params": p}, k, n, method="sample_and_log_prob"))
    lp_ms, lp_c = _time(log_prob, params, x, repeats=repeats)
    g_ms, _ = _time(grad, params, x, repeats=repeats)
    s_ms, s_c = _time(sample, params, jax.random.PRNGKey(3), repeats=repeats)
    return {"flow": kind, "dim": dim, "n": n, "log_prob_ms": lp_ms, "log_prob_grad_ms": g_ms, "sample_ms": s_ms, "compile_log_prob_s": lp_c, "compile_sample_s": s_c}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", default="2,16,100")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "ar_sampling"))
    args = p.parse_args(argv)
    dims = [2, 4] if args.tiny else [int(d) for d in args.dims.split(",")]
    n, repeats = (64, 2) if args.tiny else (args.n, args.repeats)
    rows = []
    for dim in dims:
        for kind in ("autoregressive", "coupling"):
            rows.append(measure(kind, dim, n, repeats))
            print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cmd = "python benchmarks/" + Path(__file__).name + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": cmd, "commit": commit, "device": str(jax.devices()[0]), "jax": jax.__version__, "n": n, "repeats": repeats}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    by = {(r["flow"], r["dim"]): r for r in rows}
    lines = [
        "# Sampling cost of the autoregressive spline flow (issue 15 item 2)",
        "",
        f"`{cmd}` — commit {commit}, {meta['device']}, JAX {meta['jax']}. D.1-sized flows (5 layers, 8 bins, hidden (64, 64), "
        f"B = 5), {n} points, jit-compiled through `aj.tuned_jit`, best of {repeats} after compiling. 'AR' = "
        "`flow=\"autoregressive\"` (the default: every layer splines every coordinate; sampling inverts a layer in `dim` "
        "sequential conditioner passes), 'coupling' = `flow=\"coupling\"`.",
        "",
        "| dim | AR log_prob ms | AR ∇ log_prob ms | AR sample ms | AR sample / log_prob | coupling log_prob ms | coupling sample ms | AR / coupling sample |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for dim in dims:
        a, c = by[("autoregressive", dim)], by[("coupling", dim)]
        lines.append(
            f"| {dim} | {a['log_prob_ms']:.2f} | {a['log_prob_grad_ms']:.2f} | {a['sample_ms']:.2f} | {a['sample_ms'] / a['log_prob_ms']:.1f}× | "
            f"{c['log_prob_ms']:.2f} | {c['sample_ms']:.2f} | {a['sample_ms'] / c['sample_ms']:.1f}× |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
