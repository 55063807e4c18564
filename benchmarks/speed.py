"""Speed of every training step against the machine's limit (issue 6), from ONE run.

    python benchmarks/speed.py                      # everything -> benchmarks/results/speed.{json,md}
    python benchmarks/speed.py --sections matmul,methods --methods adasym,nf --steps 10

Settings are those of Appendix D.1 on the 40-component GMM (``TrainConfig()`` defaults: 800
points full batch, M = 1000, flow 5 × 8 bins, EBM 6 × 64). Sections:

``env``      device, JAX/jaxlib versions, CPU, thread settings, load average.
``matmul``   a large float32 matmul (the machine's practical FLOP/s peak), at the start and end.
``methods``  per method: compile seconds and steps/s of the scanned chunk for 1 seed, 5 seeds
             vmapped (one ``Trainer(config, 2).chunk(steps, n)`` call) and 5 seeds one after
             the other; FLOPs per step from XLA's cost analysis of the compiled chunk (XLA
             counts a loop body once, so this is the cost of one step), achieved FLOP/s and the
             ratio to the matmul peak.
``flow``     our spline flow vs the distrax-built one (same architecture): log-prob
             value-and-grad and sampling with B = 1000, plus compile seconds vs depth.
``rss``      peak resident memory of a fresh process running the 5-seed adasym chunk.

Timings are the best of ``--repeats`` interleaved repeats (the machine is shared; the minimum
is the figure least disturbed by other processes); medians are kept in the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import adasym_jax as aj

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SECTIONS = ("env", "matmul", "methods", "flow", "rss")
METHOD_CONFIGS: dict[str, dict[str, Any]] = {
    "adasym": {},
    "adasym-pathwise": {"reverse_grad": "pathwise"},
    "nf": {"method": "nf"},
    "weighted": {"method": "weighted"},
    "wgan": {"method": "wgan"},
}
NUM_SEEDS = 5


# ---------------------------------------------------------------------------------------
# small timing helpers (shared with compute.py)
def block(tree):
    return jax.block_until_ready(tree)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = block(fn())
    return time.perf_counter() - t0, out


def summary(times: list[float]) -> dict[str, float]:
    return {"best": float(np.min(times)), "median": float(np.median(times)), "n": len(times)}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def d1_data() -> tuple[jax.Array, jax.Array]:
    train, test = aj.load_dataset("gmm40")
    return jnp.asarray(train, jnp.float32), jnp.asarray(test, jnp.float32)


def has_wgan() -> bool:
    return importlib.util.find_spec("adasym_jax.baselines") is not None


# ---------------------------------------------------------------------------------------
def env_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        affinity = os.cpu_count()
    import jaxlib

    threads = {k: os.environ.get(k) for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "JAX_PLATFORMS")}
    return {
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "thread_env": threads,
        "xla_cpu_threads_note": "XLA:CPU runs one intra-op thread pool sized to the usable cores "
        "(no XLA_FLAGS/OMP settings given unless listed)",
        "load_average_start": load_average(),
        "utc_start": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def matmul_peak(n: int = 2048, repeats: int = 10) -> dict[str, float]:
    """Best FLOP/s of an ``n × n`` float32 matmul (2 n³ flops)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    block(f(a, b))
    times = [timed(lambda: f(a, b))[0] for _ in range(repeats)]
    flops = 2.0 * n**3
    return {"n": n, "best_s": min(times), "gflops_best": flops / min(times) / 1e9, "gflops_median": flops / float(np.median(times)) / 1e9}


# ---------------------------------------------------------------------------------------
def compile_chunk(trainer: aj.Trainer, state, x, steps: int):
    """(compiled chunk, compile seconds, flops of one step per XLA's cost analysis)."""
    t0 = time.perf_counter()
    compiled = trainer.chunk(steps, x.shape[0]).lower(state, x, None).compile()
    seconds = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX returned one dict per device
        cost = cost[0]
    return compiled, seconds, float(cost.get("flops", float("nan"))), float(cost.get("bytes accessed", float("nan")))


def bench_method(name: str, overrides: dict, x, steps: int, repeats: int, step_compile: bool) -> dict[str, Any]:
    """Compile and time one method: 1 seed, 5 seeds vmapped, 5 seeds sequential."""
    config = aj.TrainConfig(**overrides)
    trainer = aj.Trainer(config, x.shape[1])
    out: dict[str, Any] = {"config_overrides": overrides, "steps_per_call": steps}
    state1 = trainer.init(1)
    state5 = trainer.init(NUM_SEEDS)
    singles = [trainer.init([s]) for s in range(NUM_SEEDS)]

    c1, out["compile_s_1seed"], out["flops_per_step_1seed"], out["bytes_per_step_1seed"] = compile_chunk(trainer, state1, x, steps)
    c5, out["compile_s_5seeds"], out["flops_per_step_5seeds"], out["bytes_per_step_5seeds"] = compile_chunk(trainer, state5, x, steps)
    if step_compile:
        # The bare step, jitted alone (what the "< 10 s compile" target refers to).
        one = jax.tree.map(lambda a: a[0], state1)
        t0 = time.perf_counter()
        jax.jit(trainer.step).lower(one, aj.Batch(x)).compile()
        out["compile_s_bare_step"] = time.perf_counter() - t0

    # warm-up (first call allocates), then interleaved repeats.
    state1 = block(c1(state1, x, None)[0])
    state5 = block(c5(state5, x, None)[0])
    singles = [block(c1(s, x, None)[0]) for s in singles]
    t1, t5v, t5s = [], [], []
    for _ in range(repeats):
        dt, (state1, _) = timed(lambda: c1(state1, x, None))
        t1.append(dt)
        t0 = time.perf_counter()
        new = []
        for s in singles:
            new.append(block(c1(s, x, None)[0]))
        t5s.append(time.perf_counter() - t0)
        singles = new
        dt, (state5, _) = timed(lambda: c5(state5, x, None))
        t5v.append(dt)
    for key, times in (("1seed", t1), ("5seeds_vmapped", t5v), ("5seeds_sequential", t5s)):
        out[f"time_{key}"] = summary(times)
        out[f"ms_per_step_{key}"] = 1e3 * min(times) / steps
        out[f"steps_per_s_{key}"] = steps / min(times)
    out["gflops_per_s_1seed"] = out["flops_per_step_1seed"] / (min(t1) / steps) / 1e9
    out["gflops_per_s_5seeds_vmapped"] = out["flops_per_step_5seeds"] / (min(t5v) / steps) / 1e9
    out["gflops_per_s_5seeds_sequential"] = NUM_SEEDS * out["flops_per_step_1seed"] / (min(t5s) / steps) / 1e9
    out["vmapped_over_sequential_speedup"] = min(t5s) / min(t5v)
    return out


# ---------------------------------------------------------------------------------------
def _time_calls(fn, args, calls: int, repeats: int) -> dict[str, float]:
    block(fn(*args))
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        block(out)
        per_call.append((time.perf_counter() - t0) / calls)
    return {"ms_best": 1e3 * min(per_call), "ms_median": 1e3 * float(np.median(per_call))}


def _flow_pair(depth: int = 5):
    sys.path.insert(0, str(HERE))
    from distrax_flow import DistraxSplineFlow  # noqa: E402

    cfg = aj.TrainConfig(num_transforms=depth)
    ours = aj.build_models(cfg, 2)[0]
    peer = DistraxSplineFlow(dim=2, num_transforms=depth, num_bins=cfg.num_bins, hidden=cfg.flow_hidden, bound=cfg.bound)
    return ours, peer


def _perturbed(params, key, scale=0.05):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _flow_fns(flow, x):
    init_kw = {"method": "log_prob"}
    params = _perturbed(flow.init(jax.random.PRNGKey(0), x, **init_kw), jax.random.PRNGKey(1))

    def nll(p):
        return -jnp.mean(flow.apply(p, x, method="log_prob"))

    vg = jax.jit(jax.value_and_grad(nll))
    sample = jax.jit(lambda p, k: flow.apply(p, k, x.shape[0], method="sample_and_log_prob"))
    return params, vg, sample


def bench_flow(x, calls: int, repeats: int, depths: tuple[int, ...]) -> dict[str, Any]:
    """Ours vs distrax on log-prob value-and-grad and sampling (B = len(x)); compile vs depth."""
    out: dict[str, Any] = {"batch": int(x.shape[0])}
    ours, peer = _flow_pair(5)
    fns = {"ours": _flow_fns(ours, x), "distrax": _flow_fns(peer, x)}
    key = jax.random.PRNGKey(7)
    for name, (params, vg, sample) in fns.items():
        t0 = time.perf_counter()
        block(vg.lower(params).compile())
        out[f"{name}_compile_s_value_and_grad"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        block(sample.lower(params, key).compile())
        out[f"{name}_compile_s_sample"] = time.perf_counter() - t0
        # sanity: the sampled log-density matches log_prob at the samples
        y, lp = sample(params, key)
        flow = ours if name == "ours" else peer
        out[f"{name}_sample_logprob_max_abs_err"] = float(jnp.max(jnp.abs(flow.apply(params, y, method="log_prob") - lp)))
    # interleave ours/distrax so both see the same machine state
    res: dict[str, list] = {}
    for _ in range(repeats):
        for name, (params, vg, sample) in fns.items():
            res.setdefault(f"{name}_value_and_grad", []).append(_time_calls(vg, (params,), calls, 1)["ms_best"])
            res.setdefault(f"{name}_sample", []).append(_time_calls(sample, (params, key), calls, 1)["ms_best"])
    for k, v in res.items():
        out[f"{k}_ms"] = {"best": min(v), "median": float(np.median(v))}
    out["speedup_value_and_grad"] = out["distrax_value_and_grad_ms"]["best"] / out["ours_value_and_grad_ms"]["best"]
    out["speedup_sample"] = out["distrax_sample_ms"]["best"] / out["ours_sample_ms"]["best"]

    depth_rows = []
    for depth in depths:
        ours_d, peer_d = _flow_pair(depth)
        row = {"num_transforms": depth}
        for name, flow in (("ours", ours_d), ("distrax", peer_d)):
            params, vg, _ = _flow_fns(flow, x)
            t0 = time.perf_counter()
            vg.lower(params).compile()
            row[f"{name}_compile_s"] = time.perf_counter() - t0
        depth_rows.append(row)
    out["compile_vs_depth"] = depth_rows
    return out


# ---------------------------------------------------------------------------------------
def rss_probe(steps: int) -> dict[str, Any]:
    """Runs in a fresh process: the 5-seed adasym chunk; reports this process's peak RSS."""
    x, _ = d1_data()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer = aj.Trainer(aj.TrainConfig(), 2)
    state = trainer.init(NUM_SEEDS)
    fn = trainer.chunk(steps, x.shape[0])
    block(fn(state, x, None))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_mb": peak / 1024.0, "rss_after_import_mb": base / 1024.0, "steps": steps}


def bench_rss(steps: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-probe", "--steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
def run(args) -> dict[str, Any]:
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    x, _ = d1_data()
    res: dict[str, Any] = {"env": env_info(), "settings": {
        "data": "gmm40 train (800 points, full batch)", "config": aj.TrainConfig().to_dict(),
        "steps_per_call": args.steps, "repeats": args.repeats, "num_seeds": NUM_SEEDS,
        "machine_shared": "yes: other agents used the same 2 CPU cores during the run",
    }}

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    if "matmul" in sections:
        res["matmul_start"] = matmul_peak()
        log(f"matmul {res['matmul_start']['gflops_best']:.1f} GFLOP/s")
    if "methods" in sections:
        res["methods"], res["skipped"] = {}, {}
        for name in args.methods.split(","):
            overrides = METHOD_CONFIGS[name]
            if overrides.get("method") == "wgan" and not has_wgan():
                res["skipped"][name] = "adasym_jax.baselines is not there yet"
                log(f"skip {name}: no adasym_jax.baselines")
                continue
            res["methods"][name] = bench_method(name, overrides, x, args.steps, args.repeats, step_compile=name == "adasym")
            r = res["methods"][name]
            log(f"{name}: {r['ms_per_step_1seed']:.1f} ms/step 1 seed, {r['ms_per_step_5seeds_vmapped']:.1f} vmapped5, "
                f"{r['ms_per_step_5seeds_sequential']:.1f} seq5; compile {r['compile_s_1seed']:.1f}/{r['compile_s_5seeds']:.1f} s")
    if "flow" in sections:
        _, test = d1_data()
        res["flow"] = bench_flow(test[:1000], args.flow_calls, args.repeats, tuple(int(d) for d in args.depths.split(",")))
        log(f"flow: vg speedup {res['flow']['speedup_value_and_grad']:.2f}x, sample {res['flow']['speedup_sample']:.2f}x")
    if "rss" in sections:
        res["rss"] = bench_rss(args.steps)
        log(f"rss {res['rss']}")
    if "matmul" in sections:
        res["matmul_end"] = matmul_peak()
        peak = max(res["matmul_start"]["gflops_best"], res["matmul_end"]["gflops_best"])
        res["peak_gflops"] = peak
        for r in res.get("methods", {}).values():
            for key in ("1seed", "5seeds_vmapped", "5seeds_sequential"):
                r[f"fraction_of_peak_{key}"] = r[f"gflops_per_s_{key}"] / peak
    res["env"]["load_average_end"] = load_average()
    res["env"]["utc_end"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return res


# ---------------------------------------------------------------------------------------
LABELS = {"adasym": "adasym (score)", "adasym-pathwise": "adasym (pathwise)", "nf": "NF", "weighted": "P-W", "wgan": "WGAN-GP"}


def _thread_env(env: dict) -> str:
    set_vars = [f"`{k}={v}`" for k, v in env["thread_env"].items() if v]
    return ", ".join(set_vars) if set_vars else "none set"


def to_markdown(res: dict[str, Any], title: str = "Speed on the 40-GMM settings of D.1") -> str:
    env, s = res["env"], res["settings"]
    lines = [f"# {title}", "", "Generated by `python benchmarks/speed.py` (all figures below come from one run).", ""]
    lines += [
        f"- Device: {env['device']} ({env['cpu']}), {env['cpus_usable']} usable cores of {env['cpu_count']}; "
        f"JAX {env['jax']}, jaxlib {env['jaxlib']}, Python {env['python']}.",
        f"- Threads: {env['xla_cpu_threads_note']}; thread environment: {_thread_env(env)}.",
        f"- Run: {env['utc_start']} → {env.get('utc_end', '?')} UTC; load average (1/5/15 min) at start "
        f"{env['load_average_start']}, at end {env.get('load_average_end')}. **The machine was shared with other "
        "agents' jobs during the run**, so absolute times are noisy; compare figures within this file only.",
        f"- Settings: {s['data']}, M = {s['config']['num_zeta_samples']}, flow {s['config']['num_transforms']} × "
        f"{s['config']['num_bins']} bins (hidden {tuple(s['config']['flow_hidden'])}), EBM {s['config']['ebm_blocks']} × "
        f"{s['config']['ebm_hidden']}; {s['steps_per_call']} steps per compiled call (`lax.scan`), best of "
        f"{s['repeats']} interleaved repeats.",
        "",
    ]
    if "peak_gflops" in res:
        lines += [
            f"**Matmul peak** (2048² float32, best of 10): {res['matmul_start']['gflops_best']:.1f} GFLOP/s at start, "
            f"{res['matmul_end']['gflops_best']:.1f} at end; peak used below = {res['peak_gflops']:.1f} GFLOP/s.",
            "",
        ]
    if res.get("methods"):
        lines += [
            "## Training steps",
            "",
            "FLOPs per step: XLA's cost analysis of the compiled chunk (XLA counts the `scan` body once, i.e. one step). "
            "'5 seq' runs the 1-seed program on 5 seeds one after the other; ms/step for 5 seeds is per step of all 5.",
            "",
            "| method | GFLOP/step (1 seed) | ms/step 1 seed | ms/step 5 vmapped | ms/step 5 seq | vmap speedup | "
            "steps/s 1 / 5v / 5s | GFLOP/s 1 / 5v | % of peak 1 / 5v / 5s | compile s 1 / 5 seeds |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in res["methods"].items():
            frac = (
                f"{100 * r['fraction_of_peak_1seed']:.0f} / {100 * r['fraction_of_peak_5seeds_vmapped']:.0f} / "
                f"{100 * r['fraction_of_peak_5seeds_sequential']:.0f}" if "fraction_of_peak_1seed" in r else "–"
            )
            lines.append(
                f"| {LABELS.get(name, name)} | {r['flops_per_step_1seed'] / 1e9:.3f} | {r['ms_per_step_1seed']:.1f} | "
                f"{r['ms_per_step_5seeds_vmapped']:.1f} | {r['ms_per_step_5seeds_sequential']:.1f} | "
                f"{r['vmapped_over_sequential_speedup']:.2f}× | {r['steps_per_s_1seed']:.1f} / "
                f"{r['steps_per_s_5seeds_vmapped']:.2f} / {r['steps_per_s_5seeds_sequential']:.2f} | "
                f"{r['gflops_per_s_1seed']:.1f} / {r['gflops_per_s_5seeds_vmapped']:.1f} | {frac} | "
                f"{r['compile_s_1seed']:.1f} / {r['compile_s_5seeds']:.1f} |"
            )
        if "adasym" in res["methods"] and "compile_s_bare_step" in res["methods"]["adasym"]:
            lines += ["", f"Compile of the bare adasym step (`jax.jit(trainer.step)`, 1 seed, no scan): "
                      f"{res['methods']['adasym']['compile_s_bare_step']:.1f} s."]
        for name, why in res.get("skipped", {}).items():
            lines += ["", f"Skipped {LABELS.get(name, name)}: {why}."]
        lines.append("")
    if "flow" in res:
        f = res["flow"]
        lines += [
            "## Our spline flow vs the distrax-built peer",
            "",
            f"Same architecture (5 couplings, 8 bins, conditioner 64-64 SiLU, B = 5, alternating masks; "
            f"`benchmarks/distrax_flow.py`), batch {f['batch']}, parameters perturbed from the identity init. "
            "Best of repeats, ours and distrax interleaved.",
            "",
            "| | ours ms | distrax ms | ours faster by | compile s ours / distrax |",
            "|---|---|---|---|---|",
            f"| log-prob value-and-grad | {f['ours_value_and_grad_ms']['best']:.2f} | {f['distrax_value_and_grad_ms']['best']:.2f} | "
            f"{f['speedup_value_and_grad']:.2f}× | {f['ours_compile_s_value_and_grad']:.1f} / {f['distrax_compile_s_value_and_grad']:.1f} |",
            f"| sample + log-prob | {f['ours_sample_ms']['best']:.2f} | {f['distrax_sample_ms']['best']:.2f} | "
            f"{f['speedup_sample']:.2f}× | {f['ours_compile_s_sample']:.1f} / {f['distrax_compile_s_sample']:.1f} |",
            "",
            f"Sanity: |log_prob(sample) − returned log-density| max {f['ours_sample_logprob_max_abs_err']:.1e} (ours), "
            f"{f['distrax_sample_logprob_max_abs_err']:.1e} (distrax).",
            "",
            "### Compile seconds of log-prob value-and-grad vs depth",
            "",
            "| num_transforms | ours (nn.scan over layers) | distrax (Python loop, unrolled) |",
            "|---|---|---|",
        ]
        for row in f["compile_vs_depth"]:
            lines.append(f"| {row['num_transforms']} | {row['ours_compile_s']:.1f} | {row['distrax_compile_s']:.1f} |")
        lines.append("")
    if "rss" in res:
        r = res["rss"]
        if "error" in r:
            lines += ["## Memory", "", f"RSS probe failed: {r['error']}", ""]
        else:
            lines += [
                "## Memory",
                "",
                f"Peak resident set of a fresh process that compiles and runs the 5-seed adasym chunk "
                f"({r['steps']} steps): **{r['peak_rss_mb']:.0f} MB** (of which {r['rss_after_import_mb']:.0f} MB "
                "after importing JAX and the library).",
                "",
            ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--methods", default=",".join(METHOD_CONFIGS))
    p.add_argument("--steps", type=int, default=20, help="steps per compiled call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--flow-calls", type=int, default=20)
    p.add_argument("--depths", default="2,5,10,20")
    p.add_argument("--out", default=str(RESULTS / "speed"), help="output path without extension")
    p.add_argument("--title", default="Speed on the 40-GMM settings of D.1")
    p.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        for m in args.methods.split(","):
            if m not in METHOD_CONFIGS:
                raise ValueError(f"unknown method {m!r}; choose from {', '.join(METHOD_CONFIGS)}")
        if args.steps < 1 or args.repeats < 1:
            raise ValueError("--steps and --repeats must be >= 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.rss_probe:
        print(json.dumps(rss_probe(args.steps)))
        return 0
    res = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float))
    out.with_suffix(".md").write_text(to_markdown(res, args.title) + "\n")
    print(f"wrote {out.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
