"""Seeds over host devices: does splitting the seed axis over several XLA CPU devices use cores that
one vmapped program leaves idle?

The jax.profiler trace of the 5-seed dual step (``speed.py --sections trace``) shows XLA's ops busy
for about as long as the step's wall time summed over both worker threads, i.e. one core mostly
idle. This benchmark times the D.1 dual chunk (the code path ``fit`` and ``adasym train`` run) for
S vmapped seeds on one CPU device against the same S seeds placed over ``--devices`` host devices
with :func:`adasym_jax.shard_seeds`, in one process, interleaved, and checks that both compute the
same step: the first step's training metrics (from the same parameters) and how far the parameters
drift apart afterwards.

    python benchmarks/seed_devices.py                     # 2 host devices, S = 2, 4, 6
    python benchmarks/seed_devices.py --seeds 4 --steps 20

Writes ``benchmarks/results/seed_devices.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _flag_devices(argv) -> int:
    for i, a in enumerate(argv):
        if a == "--devices" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--devices="):
            return int(a.split("=", 1)[1])
    return 2


# The host device count must be set before JAX starts.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_flag_devices(sys.argv)}").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import adasym_jax as aj  # noqa: E402
from _bench2d import command_line, git_commit, machine_line  # noqa: E402
from speed import RESULTS, block, compile_chunk, d1_data, first_step_metrics, metric_gap, time_interleaved  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=2, help="host CPU devices to split the seeds over (set before JAX starts)")
    p.add_argument("--seeds", default="2,4,6", help="seed counts, each a multiple of --devices")
    p.add_argument("--steps", type=int, default=20, help="steps per compiled call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "seed_devices"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    devices = jax.devices()
    if len(devices) < args.devices:
        print(f"error: {len(devices)} device(s) visible, --devices {args.devices} asked (XLA_FLAGS set before JAX started?)", file=sys.stderr)
        return 2
    if any(s % args.devices for s in seeds):
        print(f"error: every seed count must be a multiple of --devices {args.devices}: {seeds}", file=sys.stderr)
        return 2
    x, _ = d1_data()
    trainer = aj.Trainer(aj.TrainConfig(), 2)
    params_of = lambda st: [np.asarray(a) for a in jax.tree.leaves((st.flow_params, st.ebm_params, st.lambdas))]  # noqa: E731
    progs = {}
    for s in seeds:
        for placed in ("one device", f"{args.devices} devices"):
            state = trainer.init(s)
            state = jax.device_put(state, devices[0]) if placed == "one device" else aj.shard_seeds(state, devices[: args.devices])
            fn, compile_s, _, _ = compile_chunk(trainer, state, x, args.steps)
            state, metrics = block(fn(state, x, None))
            progs[(s, placed)] = [fn, state, compile_s, [], first_step_metrics(metrics), params_of(state)]
            print(f"[{time.strftime('%H:%M:%S')}] compiled S={s} on {placed} in {compile_s:.1f} s", flush=True)
    time_interleaved(progs, x, args.steps, args.repeats)
    for key, e in progs.items():  # the timings first, so a failure below does not lose them
        print(f"S={key[0]} on {key[1]}: ms per step {', '.join(f'{1e3 * t:.1f}' for t in e[3])}", flush=True)
    rows = []
    for s in seeds:
        one, many = progs[(s, "one device")], progs[(s, f"{args.devices} devices")]
        # The first step's metrics come from the same parameters, so they differ only by the
        # order of float reductions. Parameters drift apart faster: Adam (0, 0.9) moves a weight
        # by up to ≈ 3 lr per step whatever the size of its gradient, so a near-zero gradient
        # whose sign differs in the last bit moves it the other way.
        step1 = metric_gap(one[4], many[4])
        gap = max(float(np.max(np.abs(a - b))) for a, b in zip(one[5], many[5]))
        gap_end = max(float(np.max(np.abs(a - b))) for a, b in zip(params_of(one[1]), params_of(many[1])))
        rows.append({"seeds": s, "ms_one_device": 1e3 * min(one[3]), "ms_sharded": 1e3 * min(many[3]),
                     "ms_one_device_median": 1e3 * float(np.median(one[3])), "ms_sharded_median": 1e3 * float(np.median(many[3])),
                     "compile_s_one_device": one[2], "compile_s_sharded": many[2], "first_step_metric_rel_difference": step1,
                     "max_param_difference": gap, "max_param_difference_end": gap_end})
        print(f"S={s}: {rows[-1]['ms_one_device']:.1f} ms one device, {rows[-1]['ms_sharded']:.1f} ms over {args.devices}; "
              f"step-1 metrics rel. {step1:.1e}; max |Δθ,ψ,λ| {gap:.2e} after {args.steps} steps, {gap_end:.2e} at the end", flush=True)
    res = {"command": command_line(), "commit": git_commit(), "machine": machine_line().strip(), "devices": args.devices,
           "steps": args.steps, "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    L = [f"# Seeds over {args.devices} host devices: the D.1 dual chunk, one device against the seed axis split", "",
         f"Command: `{res['command']}` at commit `{res['commit']}`  ", res["machine"] + "  ",
         f"Each figure is ms per dual step (TrainConfig defaults, 800 points full batch, M = 1000), best of {args.repeats} "
         f"interleaved calls of {args.steps} steps; all programs were compiled in this process, which had "
         f"{args.devices} host CPU devices (`--xla_force_host_platform_device_count`). \"one device\" is the vmapped "
         "program `fit` runs by default; \"split\" places the seed axis over the devices with `adasym_jax.shard_seeds`. "
         "The last columns compare the two placements (float32): the largest relative difference of the first step's "
         "training metrics (same parameters, so only the order of float reductions differs), and the largest absolute "
         f"difference of any parameter after the first {args.steps} steps and after all "
         f"{args.steps * (args.repeats + 1)}. Adam (0, 0.9) moves each weight by up to ≈ 3 × lr = 3e-3 per step "
         "whatever its gradient's size, so a weight whose gradient is near zero and differs in sign in the last bit "
         "walks away by up to that much per step: the parameter columns bound divergence, the metric column shows "
         "the arithmetic is the same.", "",
         f"| seeds | one device ms/step | split over {args.devices} ms/step | speed-up | median one / split | step-1 metrics, rel. | params after {args.steps} | params at end |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        L.append(f"| {r['seeds']} | {r['ms_one_device']:.1f} | {r['ms_sharded']:.1f} | {r['ms_one_device'] / r['ms_sharded']:.2f}× | "
                 f"{r['ms_one_device_median']:.1f} / {r['ms_sharded_median']:.1f} | {r['first_step_metric_rel_difference']:.1e} | "
                 f"{r['max_param_difference']:.1e} | {r['max_param_difference_end']:.1e} |")
    out.with_suffix(".md").write_text("\n".join(L) + "\n")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
