"""Ours against the PyTorch + zuko peer (``torch_peer.py``), in one run on one CPU (issue 14 item 1).

    python benchmarks/peer_speed.py                  # full D.1 scale -> benchmarks/results/peer_speed.{md,json}
    python benchmarks/peer_speed.py --tiny           # a few steps at small sizes: checks that it all runs
    python benchmarks/peer_speed.py --quality-steps 5000

Needs the ``peer`` extra (``pip install -e '.[peer]'``: torch 2.13.0, zuko). Settings: Appendix
D.1 on the 40-component GMM (``TrainConfig()``, 800 training points full batch, M = 1000, NSF
5 × 8 bins, EBM 6 × 64); both implementations get the same ``aj.load_dataset("gmm40")`` arrays.

Speed (ms per training step, median of ``--repeats`` interleaved repeats, the side that runs
first alternating between repeats):

* ours: the compiled scan chunk that ``adasym train`` runs (``Trainer(config, 2).chunk(K, n)``,
  lowered and compiled as ``aj.fit`` does, K = ``--chunk`` = the command's ``--eval-every``
  default 100), one call per repeat, time / K; compile time reported apart;
* torch: ``TorchPeer.dual_step`` / ``nf_step`` in eager mode, K steps per seed per repeat after
  a warm-up of 3 steps; ``torch.set_num_threads(os.cpu_count())``; XLA:CPU uses its own pool of
  the same cores (both run in this one process, never at the same time);
* cases: the dual step for 1 seed; ``--seeds`` (5) seeds, ours vmapped in one program against
  theirs one seed after another; the NF (maximum-likelihood) step for the same two.

Quality: both train ``--quality-seeds`` (3) seeds for ``--quality-steps`` (2000) steps, dual and
NF, and report the test NLL of p_θ (and of q̃_ψ with ζ̂ from ``eval_zeta_samples`` flow samples)
as mean ± std over seeds, with the difference against two noise scales: SE = √(s₁²/n₁ + s₂²/n₂)
(the standard error of the difference of the means) and SD = √(s₁² + s₂²) (the spread of one
seed against one seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
import zuko  # noqa: E402

import adasym_jax as aj  # noqa: E402
from adasym_jax.runner import NonFiniteError, Trainer  # noqa: E402
from speed import load_average  # noqa: E402
from torch_peer import TorchPeer  # noqa: E402

TARGETS = {("adasym", 1): 4.0, ("adasym", 5): 6.0}  # issue 14: speed-up over the PyTorch step on this CPU
WARMUP = 3

DIFFERENCES = """\
What differs between the two implementations (everything else is the same algorithm, step for
step: see `benchmarks/torch_peer.py`'s docstring):

* **The spline flow's parameterization and initialization.** Both are fully autoregressive MADE
  spline flows with the same structure and the same 36,710 parameters (5 layers, alternating
  orders, 8 bins, 3K − 1 raw parameters per coordinate, ReLU MADE (64, 64) with the same
  connectivity, bound 5, identity outside, N(0, I) base) and the same initialization (the peer
  re-initializes zuko's MADEs as ours: lecun-normal hidden kernels, zero biases, zero last layer,
  so both start as the identity). What remains is the spline's parameterization, which is zuko's
  own: zuko squashes the raw widths and heights as w / (1 + |2w / log s|) before the softmax and
  takes the knot derivatives as exp(d / (1 + |d / log s|)) with s = 1e-3; ours takes softmax
  widths/heights with a floor of 1e-3 of the bin size and knot derivatives 1e-3 + softplus(d + c)
  (c makes d = 0 a slope of 1).
  Both are identities at all-zero raw parameters; they differ in how a gradient step moves them.
* **Random streams.** torch and JAX draw different numbers, so seed s of one is not seed s of the
  other; the quality check compares distributions over seeds, not runs.
* **Float rounding.** torch's LayerNorm takes the variance in two passes, ours as E[h²] − E[h]²
  (clipped at 0, as matmuls); torch takes the ψ and θ gradients in one backward pass of the sum of
  the two surrogates (they share no parameters), ours in two.
* The EBM matches exactly in form: spectral norm as ours (one power iteration from the stored u
  per forward pass, the new u stored by the ζ pass only, gradient through σ with u, v fixed: a
  custom layer, since `torch.nn.utils.parametrizations.spectral_norm` stores an iteration on every
  training-mode call), lecun-normal kernels, zero biases, LayerNorm ε = 1e-6, α = 1.
"""


# ---------------------------------------------------------------------------------------
def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="a few steps at small sizes (checks that everything runs; not a measurement)")
    p.add_argument("--repeats", type=int, help="interleaved timing repeats (default 5; tiny 2)")
    p.add_argument("--chunk", type=int, help="steps per timed repeat, ours one compiled chunk (default 100 = adasym train's --eval-every; tiny 3)")
    p.add_argument("--seeds", type=int, help="seeds of the multi-seed case (default 5; tiny 2)")
    p.add_argument("--quality-steps", type=int, help="training steps of the quality check (default 2000; tiny 10)")
    p.add_argument("--quality-seeds", type=int, help="seeds per implementation in the quality check (default 3; tiny 2)")
    p.add_argument("--skip-quality", action="store_true", help="timings only")
    p.add_argument("--skip-speed", action="store_true", help="the quality check only")
    p.add_argument("--out", default=str(HERE / "results" / "peer_speed"), help="output path without suffix (.md and .json are written)")
    a = p.parse_args(argv)
    defaults = dict(repeats=2, chunk=3, seeds=2, quality_steps=10, quality_seeds=2) if a.tiny else dict(
        repeats=5, chunk=100, seeds=5, quality_steps=2000, quality_seeds=3
    )
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    for k in ("repeats", "chunk", "seeds", "quality_steps", "quality_seeds"):
        if getattr(a, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    return a


def setup(tiny: bool):
    """(config, train, test): D.1, or small sizes for ``--tiny``."""
    if tiny:
        config = aj.TrainConfig(num_zeta_samples=32, num_transforms=2, ebm_blocks=2, eval_zeta_samples=256)
        train, test = aj.load_dataset("gmm40", n_train=64, n_test=256)
    else:
        config = aj.TrainConfig()
        train, test = aj.load_dataset("gmm40")
    return config, train, test


def env_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jaxlib

    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "jax_device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "zuko": zuko.__version__,
        "python": platform.python_version(),
        "thread_env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "load_average_start": load_average(),
        "utc_start": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


# ---------------------------------------------------------------------------------------
# speed
class OursCase:
    """One compiled chunk of ``k`` steps for ``seeds`` seeds, compiled as ``aj.fit`` does."""

    def __init__(self, config, x: np.ndarray, seeds: int, k: int):
        self.x = jnp.asarray(x, jnp.float32)
        self.trainer = Trainer(config, x.shape[1])
        self.state = self.trainer.init(seeds)
        self.k = k
        t0 = time.perf_counter()
        self.fn = self.trainer.chunk(k, self.x.shape[0]).lower(self.state, self.x, None).compile()
        self.compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.run()  # first execution (allocation), not timed
        self.first_call_s = time.perf_counter() - t0

    def run(self) -> float:
        t0 = time.perf_counter()
        self.state, metrics = jax.block_until_ready(self.fn(self.state, self.x, None))
        return (time.perf_counter() - t0) / self.k


class TorchCase:
    """``seeds`` peers, run one after another, ``k`` steps each per repeat."""

    def __init__(self, config, x: np.ndarray, seeds: int, k: int, method: str):
        self.x = torch.as_tensor(np.asarray(x, np.float32))
        self.peers = [TorchPeer(x.shape[1], config, seed=s) for s in range(seeds)]
        self.k = k
        self.step = (lambda p: p.dual_step(self.x)) if method == "adasym" else (lambda p: p.nf_step(self.x))
        t0 = time.perf_counter()
        for p in self.peers:
            for _ in range(WARMUP):
                self.step(p)
        self.first_call_s = (time.perf_counter() - t0) / len(self.peers)

    def run(self) -> float:
        t0 = time.perf_counter()
        for p in self.peers:
            for _ in range(self.k):
                self.step(p)
        return (time.perf_counter() - t0) / self.k


def speed(config, train: np.ndarray, args, log: Callable) -> list[dict]:
    cases = [("adasym", 1), ("adasym", args.seeds), ("nf", 1), ("nf", args.seeds)]
    built = []
    for method, seeds in cases:
        cfg = config.replace(method=method)
        log(f"[speed] building {method} × {seeds} seed(s): ours compiling, torch warming up")
        built.append((method, seeds, OursCase(cfg, train, seeds, args.chunk), TorchCase(cfg, train, seeds, args.chunk, method)))
    times = {(m, s): {"ours": [], "torch": []} for m, s, _, _ in built}
    for r in range(args.repeats):
        for method, seeds, ours, theirs in built:
            order = (("ours", ours), ("torch", theirs)) if r % 2 == 0 else (("torch", theirs), ("ours", ours))
            for name, case in order:
                times[(method, seeds)][name].append(1e3 * case.run())
        log(f"[speed] repeat {r + 1}/{args.repeats} done")
    rows = []
    for method, seeds, ours, theirs in built:
        t = times[(method, seeds)]
        med_o, med_t = float(np.median(t["ours"])), float(np.median(t["torch"]))
        target = TARGETS.get((method, seeds))
        rows.append({
            "method": method,
            "seeds": seeds,
            "ours_ms_median": med_o,
            "torch_ms_median": med_t,
            "ratio": med_t / med_o,
            "ours_ms_best": float(np.min(t["ours"])),
            "torch_ms_best": float(np.min(t["torch"])),
            "ours_ms_all": t["ours"],
            "torch_ms_all": t["torch"],
            "ours_compile_s": ours.compile_s,
            "ours_first_call_s": ours.first_call_s,
            "torch_warmup_s_per_seed": theirs.first_call_s,
            "target_ratio": target,
            "target_met": None if target is None else bool(med_t / med_o >= target),
        })
        log(f"[speed] {method} × {seeds}: ours {med_o:.2f} ms, torch {med_t:.2f} ms, ratio {med_t / med_o:.2f}")
    return rows


# ---------------------------------------------------------------------------------------
# quality
def ours_quality(config, train, test, seeds: int, steps: int) -> dict:
    t0 = time.perf_counter()
    try:
        res = aj.fit(train, config=config, seeds=seeds, num_steps=steps, eval_every=min(100, steps), test_data=test,
                     progress=False, standardize=False)
    except NonFiniteError as err:
        return {"test_nll_p": [float("nan")] * seeds, "test_nll_q": [float("nan")] * seeds, "error": str(err),
                "wall_s": time.perf_counter() - t0}
    ev = res.evals
    return {
        "test_nll_p": ev["test_nll_p"][:, -1].tolist(),
        "test_nll_q": ev["test_nll_q"][:, -1].tolist(),
        "log_zeta": ev["log_zeta"][:, -1].tolist(),
        "wall_s": time.perf_counter() - t0,
        "compile_s": res.compile_seconds,
        "steps_per_second": res.steps_per_second,
        "note": f"{seeds} seeds vmapped in one program (aj.fit, eval every {min(100, steps)} steps)",
    }


def torch_quality(config, train, test, seeds: int, steps: int, method: str) -> dict:
    x, xt = torch.as_tensor(train), torch.as_tensor(test)
    out: dict[str, Any] = {"test_nll_p": [], "test_nll_q": [], "log_zeta": [], "wall_s_per_seed": []}
    for s in range(seeds):
        t0 = time.perf_counter()
        peer = TorchPeer(x.shape[1], config, seed=s)
        for _ in range(steps):
            peer.dual_step(x) if method == "adasym" else peer.nf_step(x)
        out["test_nll_p"].append(peer.test_nll(xt))
        with torch.no_grad():  # q̃_ψ's test NLL with ζ̂ from eval_zeta_samples flow samples, as Trainer.evaluate
            y, log_p = peer.flow().rsample_and_log_prob((config.eval_zeta_samples,))
            m = config.eval_zeta_samples
            log_zeta = float(torch.logsumexp(peer.ebm(y) - log_p, 0) - np.log(m))
            out["log_zeta"].append(log_zeta)
            out["test_nll_q"].append(float(-peer.ebm(xt).mean()) + log_zeta)
        out["wall_s_per_seed"].append(time.perf_counter() - t0)
    out["wall_s"] = float(sum(out["wall_s_per_seed"]))
    out["note"] = f"{seeds} seeds one after another"
    return out


def compare(a, b) -> dict:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return {"ours_mean": float(np.nanmean(a)), "torch_mean": float(np.nanmean(b)), "diff": float("nan"),
                "within_2se": False, "within_2sd": False, "note": "a run diverged"}
    sa = float(a.std(ddof=1)) if a.size > 1 else 0.0
    sb = float(b.std(ddof=1)) if b.size > 1 else 0.0
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(sa**2 / a.size + sb**2 / b.size))
    sd = float(np.sqrt(sa**2 + sb**2))
    return {"ours_mean": float(a.mean()), "ours_std": sa, "torch_mean": float(b.mean()), "torch_std": sb, "diff": diff,
            "se": se, "sd": sd, "within_2se": bool(abs(diff) <= 2 * se), "within_2sd": bool(abs(diff) <= 2 * sd)}


def quality(config, train, test, args, log: Callable) -> dict:
    out = {"steps": args.quality_steps, "seeds": args.quality_seeds}
    oracle = aj.DATASETS["gmm40"].log_prob
    out["oracle_test_nll"] = None if oracle is None else float(-np.mean(oracle(test)))
    for method in ("adasym", "nf"):
        cfg = config.replace(method=method)
        log(f"[quality] {method}: ours, {args.quality_seeds} seeds × {args.quality_steps} steps")
        ours = ours_quality(cfg, train, test, args.quality_seeds, args.quality_steps)
        log(f"[quality] {method}: torch, {args.quality_seeds} seeds × {args.quality_steps} steps")
        theirs = torch_quality(cfg, train, test, args.quality_seeds, args.quality_steps, method)
        out[method] = {
            "ours": ours,
            "torch": theirs,
            "test_nll_p": compare(ours["test_nll_p"], theirs["test_nll_p"]),
            "test_nll_q": compare(ours["test_nll_q"], theirs["test_nll_q"]) if method == "adasym" else None,
        }
        c = out[method]["test_nll_p"]
        log(f"[quality] {method}: test NLL p ours {c['ours_mean']:.4f}, torch {c['torch_mean']:.4f}, "
            f"within 2 SE {c['within_2se']}, within 2 SD {c['within_2sd']}")
    return out


def ebm_match(config, x: np.ndarray) -> dict:
    """Our EBM's parameters (perturbed off their init so every part matters) copied into the
    peer's: log q̃_ψ on the data with the stored power iteration (the ζ pass), then without (the
    ψ pass), and ∇ψ of the mean of the latter, as the largest relative difference."""
    from adasym_jax.state import build_models
    from torch_peer import ResidualEBM as TorchEBM

    _, ebm = build_models(config, x.shape[1])
    v = ebm.init(jax.random.PRNGKey(0), jnp.zeros((1, x.shape[1])))
    leaves, tree = jax.tree.flatten(v["params"])
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree.unflatten(tree, [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
    spectral = v["spectral"]
    xj = jnp.asarray(x, jnp.float32)
    q1, new = ebm.apply({"params": params, "spectral": spectral}, xj, update_stats=True, mutable=["spectral"])
    f = lambda p_: jnp.mean(ebm.apply({"params": p_, "spectral": new["spectral"]}, xj))  # noqa: E731
    q2, g = ebm.apply({"params": params, "spectral": new["spectral"]}, xj), jax.grad(f)(params)

    T = lambda a: torch.as_tensor(np.array(a))  # noqa: E731
    tm = TorchEBM(x.shape[1], config.ebm_hidden, config.ebm_blocks, config.temperature)
    pairs = []  # (torch parameter, our array, transpose?)

    def linear(layer, fp, fs=None):
        pairs.extend([(layer.weight, fp["kernel"], True), (layer.bias, fp["bias"], False)])
        if fs is not None:
            layer.u.copy_(T(fs["u"]))

    with torch.no_grad():
        linear(tm.inp, params["SpectralDense_0"], spectral["SpectralDense_0"])
        for i, block in enumerate(tm.blocks):
            fp, fs = params[f"_ResidualBlock_{i}"], spectral[f"_ResidualBlock_{i}"]
            for j in range(2):
                pairs.extend([(block.norms[j].weight, fp[f"LayerNorm_{j}"]["scale"], False), (block.norms[j].bias, fp[f"LayerNorm_{j}"]["bias"], False)])
                linear(block.linears[j], fp[f"SpectralDense_{j}"], fs[f"SpectralDense_{j}"])
            pairs.append((block.alpha, fp["alpha"], False))
        linear(tm.out, params["Dense_0"])
        for tp, a, t in pairs:
            tp.copy_(T(a).T if t else T(a))
    xt = torch.as_tensor(np.asarray(x, np.float32))
    with torch.no_grad():
        t1 = tm(xt, update=True)
    t2 = tm(xt)
    t2.mean().backward()
    ours_g = {id(tp): (np.asarray(a).T if t else np.asarray(a)) for (tp, _, t), a in zip(pairs, _grads_in_order(g, params, pairs))}

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))

    return {
        "log_q_zeta_pass_rel": rel(t1.numpy(), q1),
        "log_q_psi_pass_rel": rel(t2.detach().numpy(), q2),
        "grad_rel_max": max(rel(tp.grad.numpy(), ours_g[id(tp)]) for tp, _, _ in pairs),
    }


def _grads_in_order(g, params, pairs):
    """Our gradient leaves in the order of ``pairs`` (matched by identity of the parameter arrays)."""
    by_id = {id(a): b for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(g))}
    return [by_id[id(a)] for _, a, _ in pairs]


# ---------------------------------------------------------------------------------------
# report
def pm(mean, std) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def markdown(res: dict) -> str:
    env, args = res["env"], res["args"]
    name = {"adasym": "dual (D.1)", "nf": "NF (max. likelihood)"}
    L = ["# Ours against the PyTorch + zuko peer (issue 14 item 1)", ""]
    if args["tiny"]:
        L += ["**TINY RUN (`--tiny`): small sizes and a few steps, to check that the benchmark runs. Not a measurement.**", ""]
    L += [
        f"Command: `{res['command']}`  ",
        f"Device: {env['cpu']}, {env['cpus_usable']} usable cores (os.cpu_count() = {env['cpu_count']}); "
        f"jax {env['jax']} / jaxlib {env['jaxlib']} ({env['jax_device']}), torch {env['torch']} "
        f"({env['torch_threads']} threads), zuko {env['zuko']}, Python {env['python']}  ",
        f"Load average at start {env['load_average_start']}, at end {res['load_average_end']}; started {env['utc_start']} UTC, "
        f"took {res['total_s'] / 60:.1f} min  ",
        f"Settings: {res['settings']}",
        "",
    ]
    if res["speed"]:
        L += [
            "## Speed (ms per training step, median of interleaved repeats)",
            "",
            f"Ours: the compiled `Trainer.chunk` of {args['chunk']} steps that `adasym train` runs, time per call / {args['chunk']}; "
            f"torch: eager `TorchPeer` steps, {args['chunk']} per seed per repeat, seeds one after another; "
            f"{args['repeats']} repeats, the side run first alternating. Speed-up = PyTorch time / ours.",
            "",
            "| step | seeds | ours (ms/step) | PyTorch + zuko (ms/step) | speed-up | target | ours compile (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["speed"]:
            target = "—" if r["target_ratio"] is None else f"≥ {r['target_ratio']:g}×: {'met' if r['target_met'] else 'not met'}"
            how = " (ours vmapped, torch sequential)" if r["seeds"] > 1 else ""
            L.append(f"| {name[r['method']]} | {r['seeds']}{how} | {r['ours_ms_median']:.2f} | {r['torch_ms_median']:.2f} | "
                     f"{r['ratio']:.2f}× | {target} | {r['ours_compile_s']:.1f} |")
        L += ["", "Best of the repeats (ms/step): " + "; ".join(
            f"{name[r['method']]} × {r['seeds']}: ours {r['ours_ms_best']:.2f}, torch {r['torch_ms_best']:.2f}" for r in res["speed"]), ""]
    q = res.get("quality")
    if q:
        L += [
            f"## Quality: the same algorithm? ({q['seeds']} seeds each, {q['steps']} steps, test NLL on {res['n_test']} points)",
            "",
            "Mean ± std over seeds (ddof 1). SE = √(s₁²/n₁ + s₂²/n₂), the standard error of the difference of the means; "
            "SD = √(s₁² + s₂²), one seed against one seed."
            + (f" The true density's test NLL is {q['oracle_test_nll']:.3f}." if q.get("oracle_test_nll") is not None else ""),
            "",
            "| step | quantity | ours | PyTorch + zuko | difference | within 2 SE | within 2 SD | wall time ours / torch (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for method in ("adasym", "nf"):
            part = q[method]
            wall = f"{part['ours']['wall_s']:.1f} / {part['torch']['wall_s']:.1f}"
            for key, label in (("test_nll_p", "test NLL of p_θ"), ("test_nll_q", "test NLL of q̃_ψ")):
                c = part.get(key)
                if not c:
                    continue
                if not np.isfinite(c["diff"]):
                    L.append(f"| {name[method]} | {label} | {c['ours_mean']:.3f} | {c['torch_mean']:.3f} | n/a ({c['note']}) | no | no | {wall} |")
                    continue
                L.append(f"| {name[method]} | {label} | {pm(c['ours_mean'], c['ours_std'])} | {pm(c['torch_mean'], c['torch_std'])} | "
                         f"{c['diff']:+.3f} | {'yes' if c['within_2se'] else 'no'} (2 SE = {2 * c['se']:.3f}) | "
                         f"{'yes' if c['within_2sd'] else 'no'} (2 SD = {2 * c['sd']:.3f}) | {wall} |")
        L += ["", "Per seed (test NLL of p_θ): " + "; ".join(
            f"{name[m]}: ours {', '.join(f'{v:.3f}' for v in q[m]['ours']['test_nll_p'])}, "
            f"torch {', '.join(f'{v:.3f}' for v in q[m]['torch']['test_nll_p'])}" for m in ("adasym", "nf")),
            "",
            "Wall times include ours' compile and evaluations every 100 steps (ours runs the seeds vmapped, torch one after another).",
            ""]
    e = res["ebm_match"]
    L += ["## Differences between the implementations", "",
          f"EBM check: our EBM's parameters (perturbed from init) copied into the peer's give the same log q̃_ψ on the training "
          f"data to a relative {max(e['log_q_zeta_pass_rel'], e['log_q_psi_pass_rel']):.1e} (the ζ pass that stores the power "
          f"iteration, then the ψ pass) and the same ∇ψ to {e['grad_rel_max']:.1e} (float32 rounding).", "", DIFFERENCES]
    return "\n".join(L)


def main(argv=None) -> int:
    args = parse(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(os.cpu_count())
    log = lambda s: print(s, flush=True)  # noqa: E731
    config, train, test = setup(args.tiny)
    res: dict[str, Any] = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0]) if sys.argv[0] else "benchmarks/peer_speed.py", *sys.argv[1:]]),
        "env": env_info(),
        "args": vars(args),
        "settings": f"gmm40, {len(train)} training points full batch, M = {config.num_zeta_samples}, flow {config.num_transforms} × "
                    f"{config.num_bins} bins MADE {config.flow_hidden}, EBM {config.ebm_blocks} × {config.ebm_hidden}",
        "config": config.to_dict(),
        "n_test": len(test),
    }
    log(f"[env] {res['env']['cpu']}, {res['env']['cpu_count']} cores; jax {jax.__version__}, torch {torch.__version__}")
    res["ebm_match"] = ebm_match(config, train)
    log(f"[ebm] our EBM's parameters in the peer's: {res['ebm_match']}")
    res["speed"] = [] if args.skip_speed else speed(config, train, args, log)
    if not args.skip_quality:
        res["quality"] = quality(config, train, test, args, log)
    res["load_average_end"] = load_average()
    res["total_s"] = time.perf_counter() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    log(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')} in {res['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
