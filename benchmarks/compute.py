"""Compute vs the number M of ζ samples (the paper's Appendix E, Figure 8), on the 40-GMM.

    python benchmarks/compute.py --part timing              # Figure 8a: ms per step vs M
    python benchmarks/compute.py --part nll --steps 1000    # Figure 8b: best test NLL vs M
    python benchmarks/compute.py --part both                # both, one process
    python benchmarks/compute.py --part report --out P      # rewrite P.md and P.png from P.json

Settings: D.1 (``TrainConfig()`` defaults, 800 training points full batch, 10k test points),
only ``num_zeta_samples`` varies over ``--ms`` (default 10, 100, 1000, 10000).

* timing: the scanned chunk of ``--chunk`` steps, compiled per M, best of ``--repeats`` calls,
  for ``--timing-seeds`` seeds vmapped; NF and WGAN-GP timed in the same run as reference lines.
* nll: ``adasym_jax.fit`` for ``--steps`` steps on ``--seeds`` vmapped seeds per M, test NLL of
  p_θ (exact) and of q_ψ (ζ from 10k flow samples) every ``--eval-every`` steps; the best over
  the run is reported per seed. Each M resumes from its checkpoint under ``--work`` (saved every
  5 min), and M values already in the JSON with the same steps, seeds and eval_every are kept,
  so rerunning an interrupted command continues it.

Results merge into ``benchmarks/results/compute.json`` (keyed by part); ``compute.md`` (tables and
the verdict on C8) and ``compute.png`` (Figure 8's two panels) are rewritten from it, so the two
parts may run as separate commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import adasym_jax as aj  # noqa: E402
from _bench2d import command_line, git_commit, train_members  # noqa: E402
from speed import RESULTS, block, compile_chunk, d1_data, env_info, load_average  # noqa: E402


def timing(ms: list[int], chunk: int, repeats: int, seeds: int) -> dict[str, Any]:
    x, _ = d1_data()
    rows = []
    configs = [(f"adasym M={m}", aj.TrainConfig(num_zeta_samples=m), m) for m in ms]
    configs.append(("nf", aj.TrainConfig(method="nf"), None))
    configs.append(("wgan-gp", aj.TrainConfig(method="wgan"), None))  # Figure 8a draws a GAN line too
    compiled = []
    for label, cfg, m in configs:
        trainer = aj.Trainer(cfg, 2)
        state = trainer.init(seeds)
        fn, compile_s, flops, _ = compile_chunk(trainer, state, x, chunk)
        state = block(fn(state, x, None)[0])
        compiled.append((label, m, fn, state, compile_s, flops))
        print(f"[{time.strftime('%H:%M:%S')}] compiled {label} in {compile_s:.1f} s", flush=True)
    times: dict[str, list[float]] = {label: [] for label, *_ in compiled}
    for _ in range(repeats):  # interleaved: every M sees the same machine state
        for i, (label, m, fn, state, compile_s, flops) in enumerate(compiled):
            t0 = time.perf_counter()
            state = block(fn(state, x, None)[0])
            times[label].append(time.perf_counter() - t0)
            compiled[i] = (label, m, fn, state, compile_s, flops)
    for label, m, _, _, compile_s, flops in compiled:
        t = times[label]
        rows.append({
            "label": label, "M": m, "ms_per_step_best": 1e3 * min(t) / chunk,
            "ms_per_step_median": 1e3 * float(np.median(t)) / chunk,
            "gflop_per_step": flops / 1e9, "compile_s": compile_s,
        })
    return {"chunk": chunk, "repeats": repeats, "seeds_vmapped": seeds, "rows": rows}


def nll(ms: list[int], steps: int, seeds: int, eval_every: int, work: Optional[Path] = None,
        done: Optional[dict[int, dict[str, Any]]] = None, save=None) -> dict[str, Any]:
    """Train ``seeds`` vmapped seeds per M; ``work/M<m>`` holds each M's resumable checkpoint,
    ``done`` rows (same steps, seeds, eval_every) are kept without training, ``save(rows)`` is
    called after every M so an interrupted run leaves what it finished."""
    train, test = d1_data()
    rows = []
    for m in ms:
        if done and m in done:
            rows.append(done[m])
            continue
        t0 = time.perf_counter()
        trainer = aj.Trainer(aj.TrainConfig(num_zeta_samples=m), 2)
        c = train_members(trainer, trainer.init(seeds), np.asarray(train), np.asarray(test), steps, eval_every,
                          f"M={m}", resume_dir=None if work is None else work / f"M{m}")
        best_p = np.nanmin(c.test_nll_p, axis=1)
        best_q = np.nanmin(c.test_nll_q, axis=1)
        rows.append({
            "M": m,
            "best_test_nll_p": best_p.tolist(),
            "best_test_nll_q": best_q.tolist(),
            "last_test_nll_p": c.test_nll_p[:, -1].tolist(),
            "last_log_zeta": c.log_zeta[:, -1].tolist(),
            "eval_steps": np.asarray(c.eval_steps).tolist(),
            "test_nll_p": np.asarray(c.test_nll_p).tolist(),
            "steps_per_second": c.steps_per_second,
            "compile_seconds": c.compile_seconds,
            "wall_seconds": time.perf_counter() - t0,
        })
        print(f"[{time.strftime('%H:%M:%S')}] M={m}: best NLL p {np.mean(best_p):.3f}, "
              f"q {np.mean(best_q):.3f} ({rows[-1]['wall_seconds']:.0f} s)", flush=True)
        if save is not None:
            save(rows)
    return {"steps": steps, "seeds": seeds, "eval_every": eval_every, "rows": rows}


def _provenance(part: dict[str, Any]) -> list[str]:
    if "command" not in part:
        return []
    return [f"`{part['command']}` at commit `{part['commit']}`.", ""]


def to_markdown(res: dict[str, Any]) -> str:
    lines = ["# Compute vs the number M of ζ samples (Appendix E, Figure 8) on the 40-GMM", ""]
    lines += [
        "Generated by `python benchmarks/compute.py`. D.1 settings (`TrainConfig()` defaults, 800 training "
        "points full batch); only M (`num_zeta_samples`) varies. Each table is one run; its command, commit "
        "and the machine's load average before and after are beside it (a load near the core count means "
        "the CPU was otherwise idle). Compare figures within one table only.",
        "",
    ]
    if "timing" in res:
        t, env = res["timing"], res["timing"]["env"]
        lines += [
            "## (a) Time per step vs M",
            "",
            f"{env['device']}, JAX {env['jax']}, run {env['utc_start']} UTC, load average {env['load_average_start']} → "
            f"{env['load_average_end']}. {t['seeds_vmapped']} seed(s) vmapped, {t['chunk']} steps per compiled call, "
            f"best of {t['repeats']} interleaved calls. GFLOP/step is XLA's count for the compiled chunk; XLA counts a "
            "loop body once, so runs made before `unroll_flow` became the default (commit 5fa2a1a) count one of the "
            "flow's five layers.",
            "",
            *_provenance(t),
            "| run | ms/step (best) | ms/step (median) | GFLOP/step (XLA) | compile s |",
            "|---|---|---|---|---|",
        ]
        for r in t["rows"]:
            lines.append(f"| {r['label']} | {r['ms_per_step_best']:.1f} | {r['ms_per_step_median']:.1f} | "
                         f"{r['gflop_per_step']:.3f} | {r['compile_s']:.1f} |")
        by_m = {r["M"]: r["ms_per_step_best"] for r in t["rows"] if r["M"] is not None}
        if 1000 in by_m and 10000 in by_m:
            lines += ["", f"Growth from M = 1 000 to M = 10 000: **{by_m[10000] / by_m[1000]:.2f}×** "
                      "(issue 6 target: ≤ 1.5×)."]
        lines.append("")
    if "nll" in res:
        n, env = res["nll"], res["nll"]["env"]
        lines += [
            "## (b) Best test NLL vs M in a fixed budget",
            "",
            f"Budget: **{n['steps']} steps** per run (the paper: 100 000 epochs), {n['seeds']} seeds vmapped, test NLL "
            f"on the 10 000 test points every {n['eval_every']} steps; best over the run, mean ± std over seeds. "
            f"Run {env['utc_start']} UTC on {env['device']}, load average {env['load_average_start']} → "
            f"{env['load_average_end']}.",
            "",
            *_provenance(n),
            *([f"Note: {n['note']}.", ""] if n.get("note") else []),
            "| M | best test NLL p_θ | best test NLL q_ψ | last log ζ̂ | steps/s |",
            "|---|---|---|---|---|",
        ]
        for r in n["rows"]:
            p, q, z = (np.asarray(r[k]) for k in ("best_test_nll_p", "best_test_nll_q", "last_log_zeta"))
            lines.append(f"| {r['M']} | {p.mean():.3f} ± {p.std():.3f} | {q.mean():.3f} ± {q.std():.3f} | "
                         f"{z.mean():.3f} | {r['steps_per_second']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def verdict(res: dict[str, Any]) -> list[str]:
    """C8 from the measured numbers: time per step against M, and the best NLL against M."""
    lines = ["## Verdict on C8 (time per step grows little with M; more M gives a better best NLL)", ""]
    if "timing" in res:
        by_m = {r["M"]: r["ms_per_step_best"] for r in res["timing"]["rows"] if r["M"] is not None}
        ms = sorted(by_m)
        steps = ", ".join(f"{a}→{b}: {by_m[b] / by_m[a]:.2f}×" for a, b in zip(ms, ms[1:]))
        lines.append(f"- Time per step, growth between successive M ({res['timing']['env']['device']}): {steps}; "
                     f"{ms[-1]} against {ms[0]}: {by_m[ms[-1]] / by_m[ms[0]]:.2f}×. The paper's Figure 8a (an A100) "
                     "shows the time barely rising."
                     + (" On a CPU a step is bound by arithmetic, so the time follows the flop count (column "
                        "GFLOP/step) once the M flow samples dominate it." if res["timing"]["env"].get("device_kind") == "cpu" else ""))
    if "nll" in res:
        rows = sorted(res["nll"]["rows"], key=lambda r: r["M"])
        for key, name in (("best_test_nll_p", "p_θ"), ("best_test_nll_q", "q_ψ")):
            parts = []
            for a, b in zip(rows, rows[1:]):
                d = np.asarray(b[key]) - np.asarray(a[key])
                se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
                parts.append(f"{a['M']}→{b['M']}: {d.mean():+.3f} (SE {se:.3f})")
            lines.append(f"- Best test NLL of {name}, change between successive M (same seeds, paired; negative = better): "
                         + "; ".join(parts) + ".")
        lines.append(f"- Scale: {res['nll']['steps']} steps, {res['nll']['seeds']} seeds per M (the paper: 100 000 epochs).")
    return lines + [""]


def plot(res: dict[str, Any], out: Path) -> None:
    """Figure 8: (a) ms per step against M with NF and WGAN-GP as lines, (b) best test NLL against M."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if "timing" in res:
        rows = res["timing"]["rows"]
        adasym = [r for r in rows if r["M"] is not None]
        axes[0].plot([r["M"] for r in adasym], [r["ms_per_step_best"] for r in adasym], "o-", color="tab:red", label="adasym (dual)")
        for r, c in zip((r for r in rows if r["M"] is None), ("tab:blue", "tab:green")):
            axes[0].axhline(r["ms_per_step_best"], color=c, ls="--", label=r["label"])
        axes[0].set(xscale="log", xlabel="M (flow samples for ζ̂)", ylabel="ms per step (best)", ylim=(0, None),
                    title=f"(a) time per step, {res['timing']['env']['device']}")
        axes[0].legend()
    if "nll" in res:
        rows = sorted(res["nll"]["rows"], key=lambda r: r["M"])
        m = [r["M"] for r in rows]
        for key, label, c in (("best_test_nll_p", "p_θ", "tab:red"), ("best_test_nll_q", "q_ψ", "tab:purple")):
            v = np.asarray([r[key] for r in rows], np.float64)
            axes[1].errorbar(m, v.mean(1), yerr=v.std(1), fmt="o-", color=c, capsize=3, label=label)
        axes[1].set(xscale="log", xlabel="M", ylabel="best test NLL (nats)",
                    title=f"(b) best test NLL, {res['nll']['steps']} steps, {res['nll']['seeds']} seeds")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=90)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Figure 8: time per step and best NLL vs M")
    p.add_argument("--part", choices=("timing", "nll", "both", "report"), default="both",
                   help="report: rewrite the .md and .png from the .json without running anything")
    p.add_argument("--ms", default="10,100,1000,10000")
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timing-seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--out", default=str(RESULTS / "compute"), help="prefix of the .json and .md written")
    p.add_argument("--work", default="runs/bench/compute", help="folder of each M's resumable checkpoint (nll part); "
                   "a rerun with the same settings continues it, and M values already in the JSON are kept")
    args = p.parse_args(argv)
    try:
        ms = [int(m) for m in args.ms.split(",")]
        if min(ms) < 1 or min(args.chunk, args.repeats, args.steps, args.seeds, args.eval_every, args.timing_seeds) < 1:
            raise ValueError("M values and all counts must be >= 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    res: dict[str, Any] = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    if args.part == "report":
        if not res:
            print(f"error: {out.with_suffix('.json')} not found", file=sys.stderr)
            return 2
        write(res, out)
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.png')}")
        return 0
    if args.part in ("timing", "both"):
        env = env_info()
        res["timing"] = timing(ms, args.chunk, args.repeats, args.timing_seeds)
        env["load_average_end"] = load_average()
        res["timing"]["env"] = env
        res["timing"].update(command=command_line(), commit=git_commit())
        write(res, out)
    if args.part in ("nll", "both"):
        env = env_info()
        prev = res.get("nll", {})
        same = all(prev.get(k) == v for k, v in (("steps", args.steps), ("seeds", args.seeds), ("eval_every", args.eval_every)))
        done = {r["M"]: r for r in prev.get("rows", [])} if same else {}

        def save(rows):
            res["nll"] = {"steps": args.steps, "seeds": args.seeds, "eval_every": args.eval_every, "rows": rows,
                          "env": {**env, "load_average_end": load_average()}, "command": command_line(), "commit": git_commit()}
            write(res, out)

        save(nll(ms, args.steps, args.seeds, args.eval_every, Path(args.work) if args.work else None, done, save)["rows"])
    print(f"wrote {out.with_suffix('.md')}")
    return 0


def write(res: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float))
    out.with_suffix(".md").write_text(to_markdown(res) + "\n" + "\n".join(verdict(res)))
    plot(res, out)


if __name__ == "__main__":
    sys.exit(main())
