"""Does unrolling the flow's scan over its layers make the dual step faster?

The flow's L = 5 autoregressive layers run as one ``nn.scan`` over stacked parameters; the trace of
the 5-seed step (``trace_ar.md``) puts 9 % of XLA's op time in the scan's bookkeeping (slicing the
stacked parameters, copying the carry). This benchmark compiles the D.1 dual chunk (the program
``fit`` and ``adasym train`` run) twice, with the layer scan rolled
(``TrainConfig(unroll_flow=False)``) and traced unrolled (``unroll_flow=True``, the default since
this measurement), for 1 and 5 vmapped seeds, times both interleaved in one process, and compares
the first step's training metrics (same parameters, so any difference is float reduction order).

    python benchmarks/scan_unroll.py
    python benchmarks/scan_unroll.py --seeds 1 --steps 10 --repeats 3

Writes ``benchmarks/results/scan_unroll.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import adasym_jax as aj  # noqa: E402
from _bench2d import command_line, git_commit, machine_line  # noqa: E402
from speed import RESULTS, block, compile_chunk, d1_data, first_step_metrics, metric_gap, time_interleaved  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="1,5", help="vmapped seed counts")
    p.add_argument("--steps", type=int, default=20, help="steps per compiled call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "scan_unroll"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    x, _ = d1_data()
    progs = {}
    for s in seeds:
        for variant in ("scan", "unrolled"):
            trainer = aj.Trainer(aj.TrainConfig(unroll_flow=variant == "unrolled"), 2)
            state = trainer.init(s)
            fn, compile_s, _, _ = compile_chunk(trainer, state, x, args.steps)
            state, metrics = block(fn(state, x, None))
            progs[(s, variant)] = [fn, state, compile_s, [], first_step_metrics(metrics)]
            print(f"[{time.strftime('%H:%M:%S')}] compiled S={s} {variant} in {compile_s:.1f} s", flush=True)
    time_interleaved(progs, x, args.steps, args.repeats)
    for key, e in progs.items():
        print(f"S={key[0]} {key[1]}: ms per step {', '.join(f'{1e3 * t:.1f}' for t in e[3])}", flush=True)
    rows = []
    for s in seeds:
        a, b = progs[(s, "scan")], progs[(s, "unrolled")]
        gap = metric_gap(a[4], b[4])
        rows.append({"seeds": s, "ms_scan": 1e3 * min(a[3]), "ms_unrolled": 1e3 * min(b[3]),
                     "ms_scan_median": 1e3 * float(np.median(a[3])), "ms_unrolled_median": 1e3 * float(np.median(b[3])),
                     "compile_s_scan": a[2], "compile_s_unrolled": b[2], "first_step_metric_rel_difference": gap})
    res = {"command": command_line(), "commit": git_commit(), "machine": machine_line().strip(), "steps": args.steps,
           "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    L = ["# The flow's layer scan, as built against unrolled: the D.1 dual chunk", "",
         f"Command: `{res['command']}` at commit `{res['commit']}`  ", res["machine"] + "  ",
         f"Each figure is ms per dual step (TrainConfig defaults: autoregressive NSF 5 × 8, EBM 6 × 64, M = 1000, 800 "
         f"points full batch), best of {args.repeats} interleaved calls of {args.steps} steps, compile apart. "
         "\"scan\" is `TrainConfig(unroll_flow=False)`, \"unrolled\" `unroll_flow=True` (the default; same parameters, same layout). The last column is the "
         "largest relative difference of the first step's training metrics between the two programs.", "",
         "| seeds | scan ms/step | unrolled ms/step | speed-up | median scan / unrolled | compile s scan / unrolled | step-1 metrics, rel. |",
         "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        L.append(f"| {r['seeds']} | {r['ms_scan']:.1f} | {r['ms_unrolled']:.1f} | {r['ms_scan'] / r['ms_unrolled']:.2f}× | "
                 f"{r['ms_scan_median']:.1f} / {r['ms_unrolled_median']:.1f} | {r['compile_s_scan']:.1f} / {r['compile_s_unrolled']:.1f} | "
                 f"{r['first_step_metric_rel_difference']:.1e} |")
    out.with_suffix(".md").write_text("\n".join(L) + "\n")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
