"""SBI benchmark (Section 5.4, Figure 6): C2ST of the dual method vs NF (neural posterior estimation).

  python benchmarks/sbi.py                      # full table -> benchmarks/results/sbi.md
  python benchmarks/sbi.py --part zeta          # only the K (flow samples per condition) study
  python benchmarks/sbi.py --steps 20000 --set batch_size=1000 lr_flow=1e-4 lr_ebm=1e-5   # D.4 scale

Both tasks × N ∈ {10³, 10⁴} × {adasym, nf} × 5 seeds (vmapped). Each run scores p_θ(· | u₀)
with the paper's C2ST after every ``--eval-every`` steps (best over the run and last) and with
the SBI-benchmark C2ST (MLP, 5-fold) on the last samples. Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from adasym_jax.config import parse_override
from adasym_jax.objective import log_zeta_estimate
from adasym_jax.runner import Trainer
from adasym_jax.sbi.run import sbi_config, train_sbi
from adasym_jax.sbi.tasks import get_task, simulate_dataset

RESULTS = Path(__file__).parent / "results"


def zeta_study(task_name: str, overrides: list[str], train_steps: int = 150, ks=(1, 2, 4, 8, 32), num_conditions: int = 256) -> list[dict]:
    """Train one seed briefly, then estimate log ζ(u_i) on ``num_conditions`` simulated u_i with K
    flow samples each, K in ``ks``, 64 repeats; the truth is K = 4096. Reports the bias and the
    spread of the per-condition log ζ̂ and of mean_i ζ̂ (the constraint's value)."""
    task = get_task(task_name)
    cfg = sbi_config(task, "adasym")
    for o in overrides:
        cfg = parse_override(o, cfg)
    cfg = cfg.replace(zeta_per_condition=1)
    beta, u = simulate_dataset(task, jax.random.PRNGKey(0), 1000)
    tr = Trainer(cfg, task.param_dim)
    state, _ = tr.chunk(train_steps, len(beta))(tr.init([0]), jnp.asarray(beta), jnp.asarray(u))
    s = jax.tree.map(lambda a: a[0], state)
    ctx = jnp.asarray(u[:num_conditions])
    v = {"params": s.ebm_params, "spectral": s.ebm_stats}

    @functools.partial(jax.jit, static_argnums=1)
    def estimate(key, k_samples: int):
        c = jnp.repeat(ctx, k_samples, axis=0)
        y, lp = tr.flow.apply({"params": s.flow_params}, key, c.shape[0], c, method="sample_and_log_prob")
        lq = tr.ebm.apply(v, y, c)
        return log_zeta_estimate(lq.reshape(-1, k_samples), lp.reshape(-1, k_samples))

    truth = np.asarray(estimate(jax.random.PRNGKey(99), 4096))
    rows = []
    for k in ks:
        reps = np.stack([np.asarray(estimate(jax.random.PRNGKey(r), k)) for r in range(64)])  # (64, C)
        err = reps - truth[None]
        mean_zeta = np.exp(reps).mean(axis=1)
        rows.append(
            {
                "K": k,
                "bias_log_zeta": float(err.mean()),
                "rmse_log_zeta": float(np.sqrt((err**2).mean())),
                "sd_mean_log_zeta": float(reps.mean(axis=1).std()),
                "mean_zeta_est": float(mean_zeta.mean()),
                "sd_mean_zeta": float(mean_zeta.std()),
            }
        )
    return [{"task": task_name, "steps": train_steps, "true_mean_zeta": float(np.exp(truth).mean()), "true_mean_log_zeta": float(truth.mean()), **r} for r in rows]


def _pm(v) -> str:
    v = np.asarray(v, np.float64)
    return f"{v.mean():.3f} ± {v.std():.3f}"


def render(parts: list[dict]) -> str:
    """Markdown tables from one or more JSON outputs of this script."""
    runs = [r for p in parts for r in p.get("runs", [])]
    zeta = [z for p in parts for z in p.get("zeta", [])]
    lines = []
    if runs:
        lines += [
            "| task | N | method | C2ST paper, best | C2ST paper, last | C2ST MLP 5-fold, last | val NLL, last | steps/s (5 seeds) | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in runs:
            if "diverged" in r:
                lines.append(f"| {r['task']} | {r['N']} | {r['method']} | diverged: {r['diverged']} | | | | | {r['wall_seconds']:.0f} |")
                continue
            lines.append(
                f"| {r['task']} | {r['N']} | {r['method']} | {_pm(r['paper_best'])} | {_pm(r['paper_last'])} | {_pm(r['mlp_last'])} "
                f"| {_pm(r['val_nll_last'])} | {r['steps_per_second']:.2f} | {r['wall_seconds']:.0f} |"
            )
        lines += ["", "Per (task, N): adasym − NF in mean best C2ST (paper protocol; negative = adasym closer to 0.5), and whether the gap exceeds the larger of the two seed std's:", ""]
        by = {(r["task"], r["N"], r["method"]): r for r in runs}
        for (t, n, m), r in by.items():
            if m != "adasym" or (t, n, "nf") not in by or "diverged" in r or "diverged" in by[(t, n, "nf")]:
                continue
            a, b = np.asarray(r["paper_best"]), np.asarray(by[(t, n, "nf")]["paper_best"])
            gap = a.mean() - b.mean()
            lines.append(f"- {t}, N={n}: {gap:+.3f} ({'exceeds' if abs(gap) > max(a.std(), b.std()) else 'within'} seed spread)")
    if zeta:
        lines += [
            "",
            "| task | K | bias of log ζ̂(u_i) | RMSE of log ζ̂(u_i) | mean_i ζ̂ (truth) | sd of mean_i ζ̂ over repeats |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for z in zeta:
            lines.append(
                f"| {z['task']} | {z['K']} | {z['bias_log_zeta']:+.2f} | {z['rmse_log_zeta']:.2f} | {z['mean_zeta_est']:.2f} ({z['true_mean_zeta']:.2f}) | {z['sd_mean_zeta']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("all", "zeta", "c2st"), default="all")
    p.add_argument("--tasks", default="two_moons,gaussian_mixture")
    p.add_argument("--sims", default="1000,10000")
    p.add_argument("--methods", default="adasym,nf")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--set", nargs="*", default=["batch_size=256", "lr_flow=1e-3", "lr_ebm=1e-4"], metavar="KEY=VALUE")
    p.add_argument("--out", default=str(RESULTS / "sbi.md"))
    p.add_argument("--render", nargs="*", metavar="JSON", help="only render Markdown tables from earlier JSON outputs")
    args = p.parse_args(argv)
    if args.render:
        print(render([json.loads(Path(f).read_text()) for f in args.render]))
        return 0
    cmd = "python benchmarks/sbi.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t_start = time.time()
    zeta_rows, rows = [], []
    json_path = Path(args.out).with_suffix(".json")
    if args.part in ("all", "zeta"):
        for t in args.tasks.split(","):
            zeta_rows += zeta_study(t, args.set)
            print(json.dumps(zeta_rows[-5:], indent=1), flush=True)
    if args.part in ("all", "c2st"):
        for t in args.tasks.split(","):
            task = get_task(t)
            for n in [int(v) for v in args.sims.split(",")]:
                for m in args.methods.split(","):
                    cfg = sbi_config(task, m)
                    for o in args.set:
                        cfg = parse_override(o, cfg)
                    t0 = time.time()
                    try:
                        r = train_sbi(task, n, m, seeds=args.seeds, steps=args.steps, eval_every=args.eval_every, config=cfg, mlp_c2st=False, progress=True)
                    except FloatingPointError as err:  # a diverged run is a result: record it, go on
                        rows.append({"task": t, "N": n, "method": m, "diverged": str(err), "wall_seconds": time.time() - t0})
                        print(json.dumps(rows[-1]), flush=True)
                        json_path.write_text(json.dumps({"zeta": zeta_rows, "runs": rows}, indent=1))
                        continue
                    from adasym_jax.sbi.c2st import c2st_mlp
                    from adasym_jax.sbi.run import reference_samples

                    ref = reference_samples(task, r.observation, jax.random.split(jax.random.PRNGKey(0), 4)[2])
                    last = r.sample_posterior(jax.random.PRNGKey(7), 5000)  # in β units (wide tasks are standardized)
                    mlp = np.array([c2st_mlp(ref, last[s], seed=s) for s in range(args.seeds)])
                    rows.append(
                        {
                            "task": t, "N": n, "method": m,
                            "paper_best": r.c2st["paper"]["best"].tolist(), "paper_last": r.c2st["paper"]["last"].tolist(),
                            "mlp_last": mlp.tolist(), "val_nll_last": r.curves["val_nll"][:, -1].tolist(),
                            "steps_per_second": r.steps_per_second, "compile_seconds": r.compile_seconds, "wall_seconds": time.time() - t0,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
                    json_path.write_text(json.dumps({"zeta": zeta_rows, "runs": rows}, indent=1))
    json_path.write_text(json.dumps({"zeta": zeta_rows, "runs": rows, "command": cmd, "wall_seconds": time.time() - t_start,
                                     "device": f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()}), jax {jax.__version__}"}, indent=1))
    print(f"wrote {json_path}; total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
