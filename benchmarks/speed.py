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
``profile``  where one adasym step's time goes: each sub-computation jitted alone and timed.
``trace``    a jax.profiler trace of the 5-seed adasym chunk, op time summed by model part.
``rss``      peak resident memory of a fresh process running the 5-seed adasym chunk.

Timings are the best of ``--repeats`` interleaved repeats (the machine is shared; the minimum
is the figure least disturbed by other processes); medians are kept in the JSON.
"""

from __future__ import annotations

import argparse
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
SECTIONS = ("env", "matmul", "methods", "flow", "profile", "trace", "rss")
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


def time_interleaved(progs: dict, x, steps: int, repeats: int) -> None:
    """Time compiled chunks in turns, ``repeats`` rounds, so every program sees the same machine
    state. Each value of ``progs`` is a list ``[fn, state, compile_s, times, ...]``: ``fn(state, x,
    None)`` runs ``steps`` steps; the state moves on and seconds per step are appended to ``times``."""
    for _ in range(repeats):
        for e in progs.values():
            t0 = time.perf_counter()
            e[1] = block(e[0](e[1], x, None)[0])
            e[3].append((time.perf_counter() - t0) / steps)


def first_step_metrics(metrics: dict) -> dict[str, np.ndarray]:
    """The first step's training metrics ``(S,)`` of a chunk's metrics ``(S, steps)``."""
    return {k: np.asarray(v)[:, 0] for k, v in metrics.items()}


def metric_gap(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest relative difference between two programs' first-step metrics (NaN if any is NaN)."""
    return float(np.max([np.max(np.abs(a[k] - b[k]) / np.maximum(np.abs(a[k]), 1e-6)) for k in a]))


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


def shape_matched_rates(repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of the matmul shapes the D.1 models actually run (best of ``repeats`` calls of
    10 matmuls each): a layer of width 64 on the 1600 rows of a step, for 1 seed and for 5
    vmapped seeds (a batched matmul). These, not the 2048² square, bound what small MLPs reach."""
    out = {}
    shapes = {"1600x64 @ 64x64": ((1600, 64), (64, 64)), "5 x (1600x64 @ 64x64)": ((5, 1600, 64), (5, 64, 64)),
              "8000x64 @ 64x64": ((8000, 64), (64, 64))}
    for name, (sa, sb) in shapes.items():
        a = jax.random.normal(jax.random.PRNGKey(0), sa, jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), sb, jnp.float32)

        def ten(a, b):  # a chain, so XLA cannot drop or merge the matmuls
            for _ in range(10):
                a = jnp.tanh(a @ b)
            return a

        f = jax.jit(ten)
        block(f(a, b))
        best = min(timed(lambda: f(a, b))[0] for _ in range(repeats))
        flops = 10 * 2.0 * np.prod(sa) * sb[-1]
        out[name] = flops / best / 1e9
    return out


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


def true_step_flops(overrides: dict, x) -> float:
    """FLOPs of one single-seed step with the flow's layer loop unrolled (XLA's cost analysis
    counts a loop body once), from the lowered (pre-optimization) HLO of the bare step."""
    trainer = aj.Trainer(aj.TrainConfig(**{**overrides, "unroll_flow": True}), x.shape[1])
    state = jax.tree.map(lambda a: a[0], trainer.init(1))
    cost = jax.jit(trainer.step).lower(state, aj.Batch(x)).cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


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
    out["flops_per_step_unrolled"] = fl = true_step_flops(overrides, x)
    out["gflops_per_s_1seed"] = fl / (min(t1) / steps) / 1e9
    out["gflops_per_s_5seeds_vmapped"] = NUM_SEEDS * fl / (min(t5v) / steps) / 1e9
    out["gflops_per_s_5seeds_sequential"] = NUM_SEEDS * fl / (min(t5s) / steps) / 1e9
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


def _flow_pair(depth: int = 5, unroll: bool = True):
    sys.path.insert(0, str(HERE))
    from distrax_flow import DistraxSplineFlow  # noqa: E402

    cfg = aj.TrainConfig(num_transforms=depth, unroll_flow=unroll)
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


def _conditioner_floor(x, depth: int = 5):
    """The part of a flow's log-prob value-and-grad that no spline code can remove: the
    ``depth`` conditioner MLPs (64-64 SiLU, 23 outputs = one coordinate's 3K − 1 spline
    parameters, as ours emits) on the batch, chained so each sees the previous output, with a
    scalar loss. Returns ``(params, jitted value_and_grad)``."""
    import flax.linen as nn

    cfg = aj.TrainConfig()

    class Chain(nn.Module):
        @nn.compact
        def __call__(self, h):
            total = 0.0
            for _ in range(depth):
                z = h
                for width in cfg.flow_hidden:
                    z = nn.silu(nn.Dense(width)(z))
                o = nn.Dense(3 * cfg.num_bins - 1)(z)
                h = h + o[:, :1]  # the next layer depends on this one, as in a flow
                total = total + jnp.mean(o**2)
            return total

    net = Chain()
    params = net.init(jax.random.PRNGKey(0), x)
    return params, jax.jit(jax.value_and_grad(lambda p: net.apply(p, x)))


def bench_flow(x, calls: int, repeats: int, depths: tuple[int, ...], peer_depths: bool = True) -> dict[str, Any]:
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
    floor = _conditioner_floor(x)
    out["conditioner_only_value_and_grad_ms"] = _time_calls(floor[1], (floor[0],), calls, repeats)["ms_best"]
    out["max_speedup_value_and_grad"] = out["distrax_value_and_grad_ms"]["best"] / out["conditioner_only_value_and_grad_ms"]
    out["speedup_sample"] = out["distrax_sample_ms"]["best"] / out["ours_sample_ms"]["best"]

    depth_rows = []
    for depth in depths:
        ours_d, peer_d = _flow_pair(depth, unroll=False)  # the rolled layer scan: one body however deep
        row = {"num_transforms": depth}
        for name, flow in (("ours", ours_d), ("distrax", peer_d))[: 2 if peer_depths else 1]:
            params, vg, _ = _flow_fns(flow, x)
            t0 = time.perf_counter()
            vg.lower(params).compile()
            row[f"{name}_compile_s"] = time.perf_counter() - t0
        depth_rows.append(row)
    out["compile_vs_depth"] = depth_rows
    return out


# ---------------------------------------------------------------------------------------
def bench_profile(x, calls: int, repeats: int) -> dict[str, Any]:
    """Where one adasym step's time goes: each sub-computation of the step jitted alone
    (1 seed, D.1 settings), timed interleaved; plus the whole step for comparison."""
    import functools

    from adasym_jax.runner import compiler_options

    options = compiler_options()  # compile the parts as the library compiles its chunks
    lib_jit = jax.jit if options is None else functools.partial(jax.jit, compiler_options=dict(options))

    config = aj.TrainConfig()
    trainer = aj.Trainer(config, x.shape[1])
    flow, ebm = trainer.flow, trainer.ebm
    state = jax.tree.map(lambda a: a[0], trainer.init(1))
    # move away from the identity init so the splines do real work
    state = state.replace(flow_params=_perturbed(state.flow_params, jax.random.PRNGKey(3)))
    theta, psi, stats = state.flow_params, state.ebm_params, state.ebm_stats
    n, m = x.shape[0], config.num_zeta_samples
    key = jax.random.PRNGKey(0)
    y = flow.apply({"params": theta}, key, n, method="sample")
    xy = jnp.concatenate([x, y])
    ym = flow.apply({"params": theta}, key, m, method="sample")

    def ebm_fwd(p, s, pts):
        return ebm.apply({"params": p, "spectral": s}, pts, update_stats=True, mutable=["spectral"])

    def ebm_vg(p, s, pts):
        return jax.value_and_grad(lambda p_: jnp.mean(ebm.apply({"params": p_, "spectral": s}, pts)))(p)

    def flow_vg(t, pts):
        return jax.value_and_grad(lambda t_: jnp.mean(flow.apply({"params": t_}, pts, method="log_prob")))(t)

    def flow_sample(t, k, num):
        return flow.apply({"params": t}, k, num, method="sample_and_log_prob")

    def adam_updates(st):
        from adasym_jax.train import _apply_updates
        from adasym_jax.state import adam

        a = _apply_updates(adam(1e-3, config), st.flow_params, st.flow_opt, st.flow_params)
        b = _apply_updates(adam(1e-3, config), st.ebm_params, st.ebm_opt, st.ebm_params)
        return a, b

    parts = {
        f"flow sample + log-prob, M = {m} (ζ samples)": (lib_jit(flow_sample, static_argnums=2), (theta, key, m)),
        f"flow sample + log-prob, N = {n} (reverse-KL samples)": (lib_jit(flow_sample, static_argnums=2), (theta, key, n)),
        f"EBM forward + power iteration, M = {m}": (lib_jit(ebm_fwd), (psi, stats, ym)),
        f"EBM value-and-grad, {2 * n} rows (ψ step)": (lib_jit(ebm_vg), (psi, stats, xy)),
        f"flow log-prob value-and-grad, {2 * n} rows (θ step, score)": (lib_jit(flow_vg), (theta, xy)),
        "Adam updates (θ and ψ)": (lib_jit(adam_updates), (state,)),
        "whole adasym step (jit of the step, no scan)": (lib_jit(trainer.step), (state, aj.Batch(x))),
    }
    for fn, args in parts.values():
        block(fn(*args))
    times: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(repeats):
        for name, (fn, args) in parts.items():
            times[name].append(_time_calls(fn, args, calls, 1)["ms_best"])
    return {name: {"ms_best": min(t), "ms_median": float(np.median(t))} for name, t in times.items()}



# ---------------------------------------------------------------------------------------
def import_baseline(ref: str):
    """The library as of git ``ref``, importable as ``adasym_jax_baseline`` (for before/after
    timings in one process: both versions compile once and are timed interleaved)."""
    import importlib
    import io
    import tarfile
    import tempfile

    repo = HERE.parent
    blob = subprocess.run(["git", "archive", ref, "adasym_jax"], cwd=repo, capture_output=True, check=True).stdout
    root = Path(tempfile.mkdtemp(prefix="adasym_baseline_"))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(root, filter="data")
    pkg = root / "adasym_jax_baseline"
    (root / "adasym_jax").rename(pkg)
    for f in pkg.rglob("*.py"):
        f.write_text(f.read_text().replace("adasym_jax", "adasym_jax_baseline"))
    sys.path.insert(0, str(root))
    return importlib.import_module("adasym_jax_baseline")


def bench_before_after(base, x, steps: int, repeats: int, calls: int) -> dict[str, Any]:
    """The adasym step (1 seed, 5 vmapped, 5 sequential), the NF step and the flow's log-prob
    value-and-grad of the baseline library vs this one, compiled once each, timed interleaved."""
    out: dict[str, Any] = {}
    progs = {}
    for tag, lib in (("before", base), ("after", aj)):
        for name, overrides in (("adasym", {}), ("nf", {"method": "nf"})):
            trainer = lib.Trainer(lib.TrainConfig(**overrides), x.shape[1])
            st1 = trainer.init(1)
            c1, cs1, fl1, _ = compile_chunk(trainer, st1, x, steps)
            entry = {"c1": c1, "s1": block(c1(st1, x, None)[0]), "compile_s_1seed": cs1, "flops_1seed": fl1}
            if name == "adasym":
                st5 = trainer.init(NUM_SEEDS)
                c5, cs5, _, _ = compile_chunk(trainer, st5, x, steps)
                entry.update(c5=c5, s5=block(c5(st5, x, None)[0]), compile_s_5seeds=cs5,
                             singles=[block(c1(trainer.init([s]), x, None)[0]) for s in range(NUM_SEEDS)])
            progs[(tag, name)] = entry
        flow = lib.build_models(lib.TrainConfig(), x.shape[1])[0]
        params, vg, _ = _flow_fns(flow, jnp.concatenate([x, x]))
        t0 = time.perf_counter()
        vg = vg.lower(params).compile()
        progs[(tag, "flow")] = {"vg": vg, "params": params, "compile_s": time.perf_counter() - t0}
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for tag in ("before", "after"):
            e = progs[(tag, "adasym")]
            dt, (e["s1"], _) = timed(lambda: e["c1"](e["s1"], x, None))
            times.setdefault(f"{tag}_adasym_1seed", []).append(dt / steps)
            dt, (e["s5"], _) = timed(lambda: e["c5"](e["s5"], x, None))
            times.setdefault(f"{tag}_adasym_5seeds_vmapped", []).append(dt / steps)
            t0 = time.perf_counter()
            e["singles"] = [block(e["c1"](s, x, None)[0]) for s in e["singles"]]
            times.setdefault(f"{tag}_adasym_5seeds_sequential", []).append((time.perf_counter() - t0) / steps)
            e = progs[(tag, "nf")]
            dt, (e["s1"], _) = timed(lambda: e["c1"](e["s1"], x, None))
            times.setdefault(f"{tag}_nf_1seed", []).append(dt / steps)
            e = progs[(tag, "flow")]
            times.setdefault(f"{tag}_flow_value_and_grad_1600", []).append(
                _time_calls(e["vg"], (e["params"],), calls, 1)["ms_best"] / 1e3)
    for k, v in times.items():
        out[k] = {"ms_best": 1e3 * min(v), "ms_median": 1e3 * float(np.median(v))}
    for tag in ("before", "after"):
        out[f"{tag}_compile_s"] = {
            "adasym_1seed": progs[(tag, "adasym")]["compile_s_1seed"],
            "adasym_5seeds": progs[(tag, "adasym")]["compile_s_5seeds"],
            "nf_1seed": progs[(tag, "nf")]["compile_s_1seed"],
            "flow_value_and_grad": progs[(tag, "flow")]["compile_s"],
        }
        out[f"{tag}_flops_adasym_1seed"] = progs[(tag, "adasym")]["flops_1seed"]
    return out


# ---------------------------------------------------------------------------------------
_BUCKETS = (
    ("layer-scan bookkeeping (stacking/slicing residuals, copies)", ("dynamic_update_slice", "dynamic_slice")),
    ("flow: conditioner MLP", ("_Conditioner", "made_conditioner")),  # coupling / autoregressive (MADE) conditioners
    ("flow: spline arithmetic, masks, log-det", ("couplings", "SplineFlow")),
    ("EBM: LayerNorm (fwd+bwd)", ("LayerNorm",)),
    ("EBM: backward (excl. LayerNorm)", ("transpose(jvp(ResidualEBM",)),
    ("EBM: forward (excl. LayerNorm)", ("ResidualEBM",)),
    ("optimizer (Adam, SGD)", ("adam", "optax", "sgd")),
)


def _bucket(op_name: str, event: str) -> str:
    if event.startswith("copy"):
        return _BUCKETS[0][0]
    for label, keys in _BUCKETS:
        if any(k in op_name for k in keys):
            return label
    return "other (ζ, losses, RNG, matmuls without source info)"


def bench_trace(x, steps: int, seeds: int) -> dict[str, Any]:
    """Profile the compiled adasym chunk with ``jax.profiler`` and add up XLA's op times by
    the model part each op came from (its ``op_name`` metadata in the compiled HLO)."""
    import re
    import tempfile

    from jax.profiler import ProfileData

    trainer = aj.Trainer(aj.TrainConfig(), x.shape[1])
    state = trainer.init(seeds)
    compiled = trainer.chunk(steps, x.shape[0]).lower(state, x, None).compile()
    meta = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = ([^\n]*)", compiled.as_text(), re.M):
        on = re.search(r'op_name="([^"]*)"', m.group(2))
        meta[m.group(1)] = (on.group(1) if on else "", m.group(2)[:90])
    state = block(compiled(state, x, None)[0])
    calls = 2
    with tempfile.TemporaryDirectory() as logdir:
        with jax.profiler.trace(logdir):
            t0 = time.perf_counter()
            for _ in range(calls):
                state = block(compiled(state, x, None)[0])
            wall = (time.perf_counter() - t0) / (calls * steps)
        path = sorted(Path(logdir).rglob("*.xplane.pb"))[-1]
        data = ProfileData.from_file(str(path))
    per_bucket: dict[str, float] = {}
    per_op: dict[str, float] = {}
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):  # XLA's worker threads
                continue
            for ev in line.events:
                if ev.name.startswith(("ThunkExecutor", "while")):
                    continue
                name = ev.name.replace("end: ", "")
                op_name, text = meta.get(name, ("", ""))
                ms = ev.duration_ns / 1e6 / (calls * steps)
                bucket = _bucket(op_name, name)
                per_bucket[bucket] = per_bucket.get(bucket, 0.0) + ms
                shape = text.split(" fusion(")[0].split(" dot(")[0].split(" copy(")[0][:40]
                key = f"{name}: {shape} ({op_name.split('body/')[-1][:70]})"
                per_op[key] = per_op.get(key, 0.0) + ms
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:15]
    return {"seeds": seeds, "steps": steps, "wall_ms_per_step": 1e3 * wall,
            "busy_ms_per_step": sum(per_bucket.values()),
            "buckets": dict(sorted(per_bucket.items(), key=lambda kv: -kv[1])), "top_ops": top}


# ---------------------------------------------------------------------------------------
def _vm_hwm_mb() -> float:
    """This process's peak resident set (VmHWM) in MB. Unlike ``ru_maxrss``, VmHWM starts
    afresh at exec, so a child does not inherit its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # pragma: no cover - non-Linux


def rss_probe(steps: int) -> dict[str, Any]:
    """Runs in a fresh process: the 5-seed adasym chunk; reports this process's peak RSS."""
    x, _ = d1_data()
    base = _vm_hwm_mb()
    trainer = aj.Trainer(aj.TrainConfig(), 2)
    state = trainer.init(NUM_SEEDS)
    fn = trainer.chunk(steps, x.shape[0])
    block(fn(state, x, None))
    return {"peak_rss_mb": _vm_hwm_mb(), "rss_after_import_mb": base, "steps": steps}


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
    }}

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    if "matmul" in sections:
        res["matmul_start"] = matmul_peak()
        res["matmul_shapes"] = shape_matched_rates()
        log(f"matmul {res['matmul_start']['gflops_best']:.1f} GFLOP/s; shapes {res['matmul_shapes']}")
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
        res["flow"] = bench_flow(test[:1000], args.flow_calls, args.repeats, tuple(int(d) for d in args.depths.split(",")), not args.no_peer_depths)
        log(f"flow: vg speedup {res['flow']['speedup_value_and_grad']:.2f}x, sample {res['flow']['speedup_sample']:.2f}x")
    if args.baseline_ref:
        res["before_after"] = bench_before_after(import_baseline(args.baseline_ref), x, args.steps, args.repeats, args.flow_calls)
        res["before_after"]["baseline_ref"] = args.baseline_ref
        log("before/after done")
    if "profile" in sections:
        res["profile"] = bench_profile(x, args.flow_calls, args.repeats)
        log("profile done")
    if "trace" in sections:
        res["trace"] = bench_trace(x, args.steps, NUM_SEEDS)
        log("trace done")
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
    if s.get("note"):
        lines += [f"Note: {s['note']}", ""]
    lines += [
        f"- Device: {env['device']} ({env['cpu']}), {env['cpus_usable']} usable cores of {env['cpu_count']}; "
        f"JAX {env['jax']}, jaxlib {env['jaxlib']}, Python {env['python']}.",
        f"- Threads: {env['xla_cpu_threads_note']}; thread environment: {_thread_env(env)}.",
        f"- Run: {env['utc_start']} → {env.get('utc_end', '?')} UTC; load average (1/5/15 min) at start "
        f"{env['load_average_start']}, at end {env.get('load_average_end')} (a 1-min load well above the threads this "
        "run uses means other jobs shared the CPU); compare figures within this file only.",
        f"- Settings: {s['data']}, M = {s['config']['num_zeta_samples']}, {s['config'].get('flow', 'coupling')} flow {s['config']['num_transforms']} × "
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
        if "matmul_shapes" in res:
            shapes = ", ".join(f"{k}: {v:.1f}" for k, v in res["matmul_shapes"].items())
            lines += [
                "**Matmul rate at the models' own shapes** (width-64 layers on a step's rows; chains of 10, best of 20), "
                f"GFLOP/s: {shapes}. A step made only of such layers cannot beat these rates, so they are "
                "the realistic ceiling for this model size; the % of peak below is against the 2048² figure.",
                "",
            ]
    if res.get("methods"):
        lines += [
            "## Training steps",
            "",
            "FLOPs per step: XLA's cost analysis of the bare single-seed step with the flow's layer `scan` unrolled "
            "(XLA counts a loop body once, so the compiled chunk's own count — in the JSON as `flops_per_step_1seed` — "
            "covered one coupling layer of five while the layer scan was compiled rolled, before `unroll_flow` became the default). Achieved GFLOP/s = that count × seeds ÷ time. '5 seq' runs the 1-seed program on 5 seeds one after the other; ms/step for 5 seeds is per step of all 5.",
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
                f"| {LABELS.get(name, name)} | {r.get('flops_per_step_unrolled', r['flops_per_step_1seed']) / 1e9:.3f} | {r['ms_per_step_1seed']:.1f} | "
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
            *([f"Floor: the five conditioner MLPs alone (value-and-grad, same batch, no spline): "
               f"{f['conditioner_only_value_and_grad_ms']:.2f} ms, so no spline code can make a flow with these "
               f"conditioners more than {f['max_speedup_value_and_grad']:.2f}× faster than the distrax-built one.", ""]
              if "conditioner_only_value_and_grad_ms" in f else []),
            f"Sanity: |log_prob(sample) − returned log-density| max {f['ours_sample_logprob_max_abs_err']:.1e} (ours), "
            f"{f['distrax_sample_logprob_max_abs_err']:.1e} (distrax).",
            "",
            "### Compile seconds of log-prob value-and-grad vs depth",
            "",
            "| num_transforms | ours (nn.scan over layers, `unroll_flow=False`) | distrax (Python loop, unrolled) |",
            "|---|---|---|",
        ]
        for row in f["compile_vs_depth"]:
            peer = f"{row['distrax_compile_s']:.1f}" if "distrax_compile_s" in row else "not run"
            lines.append(f"| {row['num_transforms']} | {row['ours_compile_s']:.1f} | {peer} |")
        lines.append("")
    if "before_after" in res:
        b = res["before_after"]
        lines += [
            "## Before / after the optimizations (same run, interleaved)",
            "",
            f"Baseline: the library at `{b['baseline_ref']}`, imported beside the current one; both compiled once, "
            "timed alternately. ms per step (for 5 seeds: per step of all five).",
            "",
            "| program | before ms (best / median) | after ms (best / median) | speedup (best) |",
            "|---|---|---|---|",
        ]
        for k in ("adasym_1seed", "adasym_5seeds_vmapped", "adasym_5seeds_sequential", "nf_1seed", "flow_value_and_grad_1600"):
            bb, aa = b[f"before_{k}"], b[f"after_{k}"]
            lines.append(f"| {k} | {bb['ms_best']:.1f} / {bb['ms_median']:.1f} | {aa['ms_best']:.1f} / {aa['ms_median']:.1f} | "
                         f"{bb['ms_best'] / aa['ms_best']:.2f}× |")
        lines += ["", "Compile seconds before → after: " + ", ".join(
            f"{k} {b['before_compile_s'][k]:.1f} → {b['after_compile_s'][k]:.1f}" for k in b["after_compile_s"]) + ".", ""]
    if "profile" in res:
        whole = [v for k, v in res["profile"].items() if k.startswith("whole")][0]["ms_best"]
        lines += [
            "## Where an adasym step's time goes (1 seed)",
            "",
            "Each part jitted alone and timed interleaved (best of repeats); the parts overlap slightly with "
            "what XLA fuses inside the whole step, so they need not sum to it exactly.",
            "",
            "| part | ms (best) | ms (median) | share of whole step |",
            "|---|---|---|---|",
        ]
        for k, v in res["profile"].items():
            lines.append(f"| {k} | {v['ms_best']:.2f} | {v['ms_median']:.2f} | {100 * v['ms_best'] / whole:.0f} % |")
        lines.append("")
    if "trace" in res:
        t = res["trace"]
        lines += [
            f"## Profile of the {t['seeds']}-seed adasym chunk (jax.profiler)",
            "",
            f"Wall {t['wall_ms_per_step']:.1f} ms per step; XLA ops busy {t['busy_ms_per_step']:.1f} ms per step summed over "
            "both worker threads. Op times added up by the model part named in each op's source metadata.",
            "",
            "| part | ms per step (both threads) | share |",
            "|---|---|---|",
        ]
        for k, v in t["buckets"].items():
            lines.append(f"| {k} | {v:.1f} | {100 * v / t['busy_ms_per_step']:.0f} % |")
        lines += ["", "Top ops:", "", "| op | ms per step |", "|---|---|"]
        for k, v in t["top_ops"]:
            lines.append(f"| `{k}` | {v:.2f} |")
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
    p.add_argument("--no-peer-depths", action="store_true", help="compile-vs-depth for our flow only")
    p.add_argument("--out", default=str(RESULTS / "speed"), help="output path without extension")
    p.add_argument("--title", default="Speed on the 40-GMM settings of D.1")
    p.add_argument("--baseline-ref", default="", help="git ref of the library to time against (before/after)")
    p.add_argument("--previous", default="", help="JSON of an earlier run to append to the report")
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
    md = to_markdown(res, args.title)
    if args.previous:
        prev = json.loads(Path(args.previous).read_text())
        prev = prev.get("this_run", prev)
        md += "\n\n#" + to_markdown(prev, "Earlier run, before the optimizations (all methods)")
        res = {"this_run": res, "earlier_run": prev}
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float))
    out.with_suffix(".md").write_text(md + "\n")
    print(f"wrote {out.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
