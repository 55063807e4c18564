"""Minibatch step time against the data size N (issue 11), from ONE run.

    python benchmarks/minibatch.py            # -> benchmarks/results/minibatch.{md,json}
    python benchmarks/minibatch.py --tiny     # smoke run (tiny model, small N, few steps)
                                              #    -> benchmarks/results/minibatch_tiny.{md,json}

NF and adasym with the D.1 model (``TrainConfig()``) and ``batch_size`` 256 on N = 10³, 10⁴,
10⁵ points of the 40-component GMM, for 1 seed and 5 vmapped seeds. Each configuration's
scanned chunk (``Trainer.chunk(steps, N)``) is compiled first (compile seconds reported
apart), then all configurations are timed in ``--repeats`` interleaved rounds (the best round
is reported, the median kept in the JSON). Epoch minibatches (``adasym_jax.minibatch``) should
make ms/step flat in N. ``--old`` adds, for comparison, the drawing used before issue 11 (a
``jax.random.permutation`` of all N rows at every step), 1 seed only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import adasym_jax as aj  # noqa: E402
from adasym_jax import minibatch as mb  # noqa: E402
from speed import RESULTS, block, env_info, load_average  # noqa: E402

TINY_CONFIG = dict(num_transforms=2, num_bins=4, flow_hidden=(16, 16), ebm_hidden=16, ebm_blocks=1, num_zeta_samples=128)


@contextlib.contextmanager
def per_step_permutation():
    """Trace the chunk with the pre-issue-11 drawing: a permutation of all N rows per step."""
    saved = mb.batch_indices, mb.minibatch_keys

    def batch_indices(key, step, n, bs):
        return jax.random.permutation(jax.random.fold_in(key, step), n)[:bs]

    def minibatch_keys(key, step, n, bs):
        return jax.random.fold_in(key, 0x5EED), key, jax.random.split(key)[0]

    mb.batch_indices, mb.minibatch_keys = batch_indices, minibatch_keys
    try:
        yield
    finally:
        mb.batch_indices, mb.minibatch_keys = saved


def measure(ns: list[int], methods: list[str], seed_counts: list[int], batch: int, steps: int, repeats: int, tiny: bool, old: bool) -> list[dict[str, Any]]:
    base = aj.TrainConfig(**TINY_CONFIG) if tiny else aj.TrainConfig()
    data = {n: jax.numpy.asarray(aj.load_dataset("gmm40", n_train=n, n_test=1)[0]) for n in ns}
    runs: list[dict[str, Any]] = []
    for method in methods:
        config = base.replace(method=method, batch_size=batch)
        drawings = [("epochs", seed_counts)] + ([("per-step permutation", seed_counts[:1])] if old else [])
        for drawing, counts in drawings:
            for seeds in counts:
                for n in ns:
                    trainer = aj.Trainer(config, 2)  # fresh: nothing cached from another drawing
                    state = trainer.init(seeds)
                    t0 = time.perf_counter()
                    with per_step_permutation() if drawing != "epochs" else contextlib.nullcontext():
                        compiled = trainer.chunk(steps, n).lower(state, data[n], None).compile()
                    compile_s = time.perf_counter() - t0
                    block(compiled(state, data[n], None))  # warm-up call
                    runs.append(dict(method=method, drawing=drawing, seeds=seeds, n=n, compile_s=compile_s, times=[],
                                     _fn=compiled, _args=(state, data[n], None)))
                    print(f"compiled {method} {drawing} seeds={seeds} N={n} in {compile_s:.1f} s", flush=True)
    for r in range(repeats):  # interleaved rounds: drift of a shared machine hits every config alike
        for run in runs:
            t0 = time.perf_counter()
            block(run["_fn"](*run["_args"]))
            run["times"].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{repeats} done", flush=True)
    out = []
    for run in runs:
        t = np.asarray(run["times"]) / steps * 1e3
        out.append({k: v for k, v in run.items() if not k.startswith("_") and k != "times"}
                   | {"ms_per_step_best": float(t.min()), "ms_per_step_median": float(np.median(t)), "ms_per_step_all": t.tolist()})
    ref = {(r["method"], r["drawing"], r["seeds"]): r["ms_per_step_best"] for r in out if r["n"] == ns[0]}
    for r in out:
        r["ratio_to_smallest_n"] = r["ms_per_step_best"] / ref[(r["method"], r["drawing"], r["seeds"])]
    return out


def to_markdown(res: dict[str, Any]) -> str:
    env, s = res["env"], res["settings"]
    ns = s["ns"]
    lines = [
        "# Minibatch step time against N" + (" (TINY smoke run: not a measurement)" if s["tiny"] else ""),
        "",
        f"Command: `{res['command']}` (library at `{res.get('commit', '?')}`).",
        "",
        f"- Device: {env['device']} ({env['device_kind']}; jax.devices() = {res['devices']}); JAX {env['jax']}, jaxlib {env['jaxlib']}; "
        f"{env['cpus_usable']} usable cores; load average at start {env['load_average_start']}, at end {env['load_average_end']}.",
        f"- Settings: {'tiny model' if s['tiny'] else 'D.1 model (`TrainConfig()`)'}, batch {s['batch']}, {s['steps']} steps per "
        f"compiled chunk, best of {s['repeats']} interleaved rounds; data: gmm40 samples.",
        "- ms/step is per step of all seeds together (5 seeds vmapped in one program); × is the ratio to "
        f"N = {ns[0]} of the same row. Compile seconds are apart (not in ms/step).",
        "",
        "| method | drawing | seeds | " + " | ".join(f"N = {n}: ms/step (×)" for n in ns) + " | compile s |",
        "|---|---|---|" + "---|" * len(ns) + "---|",
    ]
    keys = []
    for r in res["runs"]:
        if (r["method"], r["drawing"], r["seeds"]) not in keys:
            keys.append((r["method"], r["drawing"], r["seeds"]))
    for key in keys:
        rows = {r["n"]: r for r in res["runs"] if (r["method"], r["drawing"], r["seeds"]) == key}
        cells = [f"{rows[n]['ms_per_step_best']:.2f} ({rows[n]['ratio_to_smallest_n']:.2f}×)" for n in ns]
        comp = " / ".join(f"{rows[n]['compile_s']:.1f}" for n in ns)
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + f" | {comp} |")
    return "\n".join(lines)


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description="minibatch ms/step vs N (issue 11)")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny model, N = 512, 1024, 2048, batch 64, 3 steps, 2 rounds")
    p.add_argument("--ns", default=None, help="comma-separated data sizes (default 1000,10000,100000)")
    p.add_argument("--methods", default="nf,adasym")
    p.add_argument("--seeds", default="1,5", help="seed counts, comma-separated")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256)")
    p.add_argument("--steps", type=int, default=None, help="steps per compiled chunk (default 100)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds (default 5)")
    p.add_argument("--old", action="store_true", help="also time the per-step permutation drawing (1 seed)")
    p.add_argument("--out", default=None, help="output path without suffix")
    args = p.parse_args(argv)
    t = args.tiny
    ns = [int(v) for v in (args.ns or ("512,1024,2048" if t else "1000,10000,100000")).split(",")]
    batch = args.batch or (64 if t else 256)
    steps = args.steps or (3 if t else 100)
    repeats = args.repeats or (2 if t else 5)
    methods = args.methods.split(",")
    seed_counts = [int(v) for v in args.seeds.split(",")]
    bad = [m for m in methods if m not in ("nf", "adasym", "weighted", "wgan")]
    if bad or min(steps, repeats, *seed_counts) < 1 or batch >= min(ns):
        print("error: methods must be nf/adasym/weighted/wgan, counts >= 1 and the batch smaller than every N", file=sys.stderr)
        return 2
    out = Path(args.out or (RESULTS / ("minibatch_tiny" if t else "minibatch")))
    env = env_info()
    runs = measure(ns, methods, seed_counts, batch, steps, repeats, t, args.old)
    env["load_average_end"] = load_average()
    res = {
        "command": "python benchmarks/minibatch.py" + (" " + shlex.join(argv) if argv else ""),
        "commit": _commit(),
        "devices": [str(d) for d in jax.devices()],
        "env": env,
        "settings": {"tiny": t, "ns": ns, "batch": batch, "steps": steps, "repeats": repeats, "methods": methods, "seeds": seed_counts},
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2))
    out.with_suffix(".md").write_text(to_markdown(res) + "\n")
    print(to_markdown(res))
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
