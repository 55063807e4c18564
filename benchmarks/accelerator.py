"""The accelerator run of issue 14 item 4: steps/s against vmapped seeds, the PyTorch peer on
the same device, and the paper-scale 40-GMM study, inside one global time budget.

    bash benchmarks/accelerator.sh            # on the GPU machine (installs, then runs this)
    python benchmarks/accelerator.py --tiny   # the same work at tiny scale, any device

Work, most valuable first (each part is written to the report as soon as it is done, and the
whole run stops cleanly when ``--deadline`` / ``--budget`` is reached):

1. seed ladder A: dual (``method="adasym"``) and NF at 1, 5, 100 vmapped seeds;
2. the PyTorch + zuko peer (``benchmarks/torch_peer.py``) on the same device, in a subprocess
   (skipped with a note when torch, zuko or the file is missing);
3. the paper-scale study (Appendix D.1): dual and NF with 5 seeds and the 25 P-W pairs as one
   vmapped program, 100,000 steps each, test NLL every 1000 steps on the 10,000 test points,
   the three programs advanced chunk by chunk side by side so that they reach the same step;
   checkpointed (``adasym_jax.checkpoint``) into ``--state-dir`` so that a later call resumes;
4. seed ladder B: P-W and WGAN at 1, 5, 100, then every method at 25 and 1000 seeds.

A ladder point compiles ``Trainer(config, 2).chunk(K, 800)`` (the program ``fit`` and
``adasym train`` run) apart, runs it once to warm up, then times ``--repeats`` calls with
``block_until_ready``; a method's ladder stops at its first out-of-memory. Settings are
``TrainConfig()`` (D.1) on ``load_dataset("gmm40")``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
LADDER = (1, 5, 25, 100, 1000)
METHODS = {"dual": "adasym", "nf": "nf", "pw": "weighted", "wgan": "wgan"}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="2 ladder points (1, 2 seeds), 20 steps, study at 200 steps, 2 P-W pairs")
    p.add_argument("--budget", type=float, default=500.0, help="seconds from the start of this process (default 500)")
    p.add_argument("--deadline", type=float, help="absolute end (Unix time) given by accelerator.sh; overrides --budget")
    p.add_argument("--out", help="folder of accelerator.{md,json} (default benchmarks/results; --tiny: /tmp/adasym_accelerator_tiny)")
    p.add_argument("--state-dir", help="checkpoints and partial results for resuming (default <out>/accelerator_state)")
    p.add_argument("--steps", type=int, help="steps per timed ladder call K (default 50; --tiny 20)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per ladder point at most (best kept)")
    p.add_argument("--study-steps", type=int, help="steps of each study run (default 100000; --tiny 200)")
    p.add_argument("--reserve", type=float, help="seconds the study leaves for ladder B (default 120; --tiny 0)")
    p.add_argument("--checkpoint-every", type=float, default=90.0, help="seconds between study checkpoints")
    p.add_argument("--skip", default="", help="comma list of parts to skip: ladder,torch,study")
    p.add_argument("--torch-only", help=argparse.SUPPRESS)  # internal: run the peer, write JSON to this path
    a = p.parse_args(argv)
    a.steps = a.steps or (20 if a.tiny else 50)
    a.study_steps = a.study_steps or (200 if a.tiny else 100_000)
    a.eval_every = 50 if a.tiny else 1000
    a.eval_zeta = 2000 if a.tiny else 10_000
    a.reserve = a.reserve if a.reserve is not None else (0.0 if a.tiny else 120.0)
    a.out = Path(a.out or ("/tmp/adasym_accelerator_tiny" if a.tiny else HERE / "results"))
    a.state_dir = Path(a.state_dir or a.out / "accelerator_state")
    a.start = time.time()
    a.deadline = a.deadline or a.start + a.budget
    return a


def left(args) -> float:
    return args.deadline - time.time()


def is_oom(err: BaseException) -> bool:
    s = str(err)
    return "RESOURCE_EXHAUSTED" in s or "out of memory" in s.lower() or "Out of memory" in s


def nan_to_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: nan_to_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [nan_to_none(x) for x in v]
    return v


# --------------------------------------------------------------------------------------
# the PyTorch peer (run in a subprocess: its CUDA libraries stay out of JAX's process)
def torch_only(path: str, tiny: bool) -> int:
    out: dict[str, Any] = {}
    try:
        import torch
    except ImportError as e:
        out["skipped"] = f"torch is not importable ({e})"
        Path(path).write_text(json.dumps(out))
        return 0
    sys.path.insert(0, str(HERE))
    try:
        import torch_peer
    except ImportError as e:
        out["skipped"] = f"benchmarks/torch_peer.py or zuko is not importable ({e})"
        Path(path).write_text(json.dumps(out))
        return 0
    import adasym_jax as aj

    cuda = torch.cuda.is_available()
    if not cuda and not tiny:
        out["note"] = "torch sees no CUDA device: timed on the CPU"
    dev = torch.device("cuda" if cuda else "cpu")
    out.update(torch=torch.__version__, device=torch.cuda.get_device_name(0) if cuda else "cpu",
               zuko=getattr(sys.modules.get("zuko"), "__version__", "?"))
    train, test = aj.load_dataset("gmm40")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    steps = 5 if tiny else 30
    with dev:
        x = torch.as_tensor(np.asarray(train, np.float32))
        xt = torch.as_tensor(np.asarray(test, np.float32))
        for kind in ("dual", "nf"):
            peer = torch_peer.TorchPeer(2, aj.TrainConfig(), seed=0)
            step = peer.dual_step if kind == "dual" else peer.nf_step
            t0 = time.perf_counter()
            for _ in range(3):
                step(x)
            sync()
            out[f"{kind}_warmup_s"] = time.perf_counter() - t0
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(steps):
                    step(x)
                sync()
                times.append((time.perf_counter() - t0) / steps)
            out[f"{kind}_ms_per_step"] = 1e3 * min(times)
            out[f"{kind}_ms_per_step_median"] = 1e3 * float(np.median(times))
            out[f"{kind}_test_nll_after"] = peer.test_nll(xt)
            out[f"{kind}_steps_timed"] = 3 * steps + 3
    Path(path).write_text(json.dumps(nan_to_none(out)))
    return 0


def run_torch(args) -> dict[str, Any]:
    path = args.state_dir / "torch.json"
    limit = max(10.0, min(150.0, left(args) - 5))
    cmd = [sys.executable, __file__, "--torch-only", str(path)] + (["--tiny"] if args.tiny else [])
    try:
        proc = subprocess.run(cmd, timeout=limit, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"skipped": f"the peer did not finish within {limit:.0f} s"}
    if proc.returncode != 0 or not path.is_file():
        return {"skipped": f"the peer failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}"}
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args):
        import jax
        import jax.numpy as jnp

        import adasym_jax as aj

        self.args, self.jax, self.aj = args, jax, aj
        train, test = aj.load_dataset("gmm40")
        self.x = jnp.asarray(train, jnp.float32)
        self.test = jnp.asarray(test, jnp.float32)
        args.state_dir.mkdir(parents=True, exist_ok=True)
        self.results_path = args.state_dir / "results.json"
        self.results: dict[str, Any] = {"ladder": {}, "torch": None, "study": {}, "calls": []}
        if self.results_path.is_file():
            self.results.update(json.loads(self.results_path.read_text()))
            print(f"resuming from {args.state_dir}: {len(self.results['ladder'])} ladder points done", flush=True)
        self.results["calls"].append({"utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(args.start)),
                                      "command": command_line(), "env": env_info(jax), "budget_s": args.deadline - args.start})

    # -- bookkeeping ------------------------------------------------------------------
    def save(self):
        self.results["calls"][-1]["wall_s"] = time.time() - self.args.start
        data = json.dumps(nan_to_none(self.results), indent=1)
        self.results_path.write_text(data)
        self.args.out.mkdir(parents=True, exist_ok=True)
        (self.args.out / "accelerator.json").write_text(data)
        (self.args.out / "accelerator.md").write_text(report(self.results, self.args))

    # -- ladder -----------------------------------------------------------------------
    def ladder_point(self, name: str, n: int, blocked: set) -> None:
        key = f"{name}/{n}"
        if key in self.results["ladder"] or name in blocked:
            if self.results["ladder"].get(key, {}).get("oom"):
                blocked.add(name)
            return
        jax, aj, args = self.jax, self.aj, self.args
        prev = [v for k, v in self.results["ladder"].items() if k.startswith(name + "/") and "ms_per_step" in v]
        est = 30.0 + (max(v["compile_s"] for v in prev) + 3 * max(v["call_s"] for v in prev) * max(1, n / max(v["seeds"] for v in prev)) if prev else 0)
        if left(args) < min(est, 240.0):
            print(f"[ladder] {key}: skipped, {left(args):.0f} s left (needs ≈ {est:.0f} s)", flush=True)
            return
        row: dict[str, Any] = {"method": METHODS[name], "seeds": n, "steps_per_call": args.steps}
        try:
            trainer = aj.Trainer(aj.TrainConfig(method=METHODS[name]), 2)
            state = trainer.init(n)
            t0 = time.perf_counter()
            compiled = trainer.chunk(args.steps, self.x.shape[0]).lower(state, self.x, None).compile()
            row["compile_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            state = jax.block_until_ready(compiled(state, self.x, None)[0])
            row["first_call_s"] = time.perf_counter() - t0
            times = []
            while len(times) < args.repeats and (not times or left(args) > 3 * min(times) + 20):
                t0 = time.perf_counter()
                state, metrics = compiled(state, self.x, None)
                jax.block_until_ready(state)
                times.append(time.perf_counter() - t0)
            row["call_s"] = min(times)
            row["call_s_all"] = times
            row["ms_per_step"] = 1e3 * min(times) / args.steps
            row["steps_per_s"] = args.steps / min(times)
            row["seed_steps_per_s"] = n * args.steps / min(times)
            row["finite"] = bool(all(np.isfinite(np.asarray(v)).all() for v in jax.device_get(metrics).values()))
            try:
                stats = jax.devices()[0].memory_stats() or {}
                row["process_peak_bytes"] = stats.get("peak_bytes_in_use")  # the process's peak so far
            except Exception:  # noqa: BLE001 - CPU devices have no memory stats
                pass
            print(f"[ladder] {key}: {row['ms_per_step']:.3f} ms/step, compile {row['compile_s']:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            row["oom"] = str(e).splitlines()[0][:300]
            blocked.add(name)
            print(f"[ladder] {key}: out of memory, {name}'s ladder stops", flush=True)
        self.results["ladder"][key] = row
        self.save()

    # -- study ------------------------------------------------------------------------
    def study(self) -> None:
        jax, aj, args = self.jax, self.aj, self.args
        from adasym_jax.baselines import init_pw_grid, pw_grid_members
        from adasym_jax.checkpoint import is_checkpoint, load_checkpoint, save_checkpoint

        seeds = 2 if args.tiny else 5
        members = pw_grid_members(1)
        if args.tiny:
            members = [members[0], members[-1]]
        base = aj.TrainConfig(eval_zeta_samples=args.eval_zeta)
        groups = {"dual": base, "nf": base.replace(method="nf"), "pw": base.replace(method="weighted")}
        study = self.results["study"]
        study.setdefault("settings", {"steps": args.study_steps, "eval_every": args.eval_every, "eval_zeta": args.eval_zeta,
                                      "seeds": seeds, "pw_pairs": [[g.w_fw, g.w_rv] for g in members]})
        runs = {}
        t_compile = t_study = time.perf_counter()
        wall0 = study.get("wall_s", 0.0)
        for name, cfg in groups.items():
            trainer = aj.Trainer(cfg, 2)
            state = init_pw_grid(trainer, members) if name == "pw" else trainer.init(seeds)
            ids = list(range(len(members))) if name == "pw" else list(range(seeds))
            ck = args.state_dir / f"ckpt_{name}"
            rec = study.setdefault(name, {"eval_steps": [], "test_nll_p": [], "test_nll_q": [], "log_zeta": [],
                                          "run_s": 0.0, "eval_s": 0.0, "compile_s": 0.0, "diverged_at": [-1] * len(ids)})
            done = 0
            if is_checkpoint(ck):
                host, meta = load_checkpoint(ck, state)
                state = jax.device_put(host)
                done = int(meta["step"])
                rec.update(meta["extra"]["record"])  # the curves as they were at the checkpoint
                print(f"[study] {name}: resumed at step {done}", flush=True)
            else:  # nothing to continue from: start the curves again
                rec.update(eval_steps=[], test_nll_p=[], test_nll_q=[], log_zeta=[], run_s=0.0, eval_s=0.0,
                           diverged_at=[-1] * len(ids))
            for k in ("test_nll_p", "test_nll_q", "log_zeta"):  # JSON null -> NaN
                rec[k] = [[np.nan if v is None else v for v in row] for row in rec[k]]
            if done >= args.study_steps:
                continue
            t0 = time.perf_counter()
            chunk = trainer.chunk(args.eval_every, self.x.shape[0]).lower(state, self.x, None).compile()
            trainer.evaluate(state, self.test)
            rec["compile_s"] += time.perf_counter() - t0
            runs[name] = {"trainer": trainer, "state": state, "chunk": chunk, "done": done, "ids": ids, "cfg": cfg, "ck": ck,
                          "rec": rec, "last": None}
        self.save()
        print(f"[study] compiled {sorted(runs)} in {time.perf_counter() - t_compile:.1f} s", flush=True)

        def checkpoint(r):
            save_checkpoint(r["ck"], r["state"], r["cfg"], 2, r["ids"], extra={"record": nan_to_none(r["rec"])})

        last_ck = time.time()
        while runs:
            est = sum((r["last"] or 0.0) for r in runs.values()) * 1.2 + 5
            if left(args) - args.reserve < est:
                print(f"[study] budget reached ({left(args):.0f} s left, {args.reserve:.0f} s reserved); checkpointing", flush=True)
                break
            for name in list(runs):
                r = runs[name]
                n = min(args.eval_every, args.study_steps - r["done"])
                if n != args.eval_every:  # the last, shorter chunk (only if steps % eval_every)
                    r["chunk"] = r["trainer"].chunk(n, self.x.shape[0])
                t0 = time.perf_counter()
                state, metrics = r["chunk"](r["state"], self.x, None)
                metrics = jax.device_get(metrics)
                dt = time.perf_counter() - t0
                rec = r["rec"]
                rec["run_s"] += dt
                r["last"] = dt
                for arr in metrics.values():
                    bad = ~np.isfinite(np.asarray(arr))
                    for m in np.where(bad.any(axis=1))[0]:
                        if rec["diverged_at"][m] < 0:
                            rec["diverged_at"][m] = r["done"] + int(np.argmax(bad[m])) + 1
                r["state"], r["done"] = state, r["done"] + n
                t0 = time.perf_counter()
                ev = r["trainer"].evaluate(state, self.test)
                rec["eval_s"] += time.perf_counter() - t0
                rec["eval_steps"].append(r["done"])
                for k in ("test_nll_p", "test_nll_q", "log_zeta"):
                    rec[k].append([float(v) for v in ev[k]])
                rec["steps_per_s"] = r["done"] / rec["run_s"] if rec["run_s"] else float("nan")
                if r["done"] >= args.study_steps:
                    checkpoint(r)
                    del runs[name]
                    print(f"[study] {name}: finished {r['done']} steps", flush=True)
            step_now = max([r["done"] for r in runs.values()] or [args.study_steps])
            print(f"[study] step {step_now}: " + ", ".join(
                f"{k} NLL {np.nanmean(study[k]['test_nll_p'][-1]):.3f} ({study[k].get('steps_per_s', 0):.0f} steps/s)"
                for k in groups if study[k]["test_nll_p"]) + f"; {left(args):.0f} s left", flush=True)
            study["wall_s"] = wall0 + time.perf_counter() - t_study
            if time.time() - last_ck > args.checkpoint_every:
                for r in runs.values():
                    checkpoint(r)
                last_ck = time.time()
                self.save()
        for r in runs.values():
            checkpoint(r)
        study["wall_s"] = wall0 + time.perf_counter() - t_study
        self.save()


# --------------------------------------------------------------------------------------
def env_info(jax) -> dict[str, Any]:
    import jaxlib

    d = jax.devices()[0]
    return {"device": str(d), "device_kind": getattr(d, "device_kind", "?"), "platform": d.platform,
            "num_devices": jax.device_count(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
            "xla_flags": os.environ.get("XLA_FLAGS")}


def command_line() -> str:
    return os.environ.get("ACCEL_COMMAND") or "python " + " ".join(sys.argv)


def _f(v, fmt="{:.3f}", none="–"):
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _pm(rows):
    a = np.asarray([np.nan if v is None else v for v in rows], np.float64)
    ok = a[np.isfinite(a)]
    if not ok.size:
        return "n/a"
    s = f"{ok.mean():.3f} ± {ok.std():.3f}"
    return s + (f" ({a.size - ok.size} non-finite)" if ok.size < a.size else "")


def report(res: dict[str, Any], args) -> str:
    calls = res["calls"]
    env = calls[-1]["env"]
    L = ["# Accelerator run (issue 14 item 4)\n"]
    if args.tiny:
        L.append("**TINY SCALE (`--tiny`): a rehearsal of the script, not a measurement.**\n")
    for i, c in enumerate(calls):
        e = c["env"]
        L.append(f"- Call {i + 1} ({c['utc']} UTC): `{c['command']}`; device **{e['device_kind']}** ({e['platform']}, "
                 f"{e['num_devices']} device(s)), jax {e['jax']} / jaxlib {e['jaxlib']}, Python {e['python']}; "
                 f"budget {c['budget_s']:.0f} s, wall {c.get('wall_s', float('nan')):.0f} s.")
    L.append("\nSettings: `TrainConfig()` (Appendix D.1: autoregressive NSF 5 × 8 bins, EBM 6 × 64, M = 1000, full batch of "
             "800 gmm40 points). Steps through `Trainer(config, 2).chunk(K, 800)`, the program `fit` and `adasym train` run; "
             f"compile timed apart, then the best of up to {args.repeats} calls of K steps with `block_until_ready`.\n")

    L.append("## Steps per second against vmapped seeds\n")
    L.append("| method | seeds | ms/step (all seeds) | steps/s | seed-steps/s | × the 1-seed time | compile s | K | note |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    lad = res["ladder"]
    for name in METHODS:
        one = lad.get(f"{name}/1", {}).get("ms_per_step")
        for n in sorted({int(k.split("/")[1]) for k in lad if k.startswith(name + "/")}):
            r = lad[f"{name}/{n}"]
            if r.get("oom"):
                L.append(f"| {name} | {n} | – | – | – | – | – | {r['steps_per_call']} | out of memory |")
                continue
            ratio = r["ms_per_step"] / one if one else None
            note = "" if r.get("finite", True) else "non-finite metrics"
            L.append(f"| {name} | {n} | {r['ms_per_step']:.3f} | {r['steps_per_s']:.1f} | {r['seed_steps_per_s']:.0f} | "
                     f"{_f(ratio, '{:.2f}')} | {r['compile_s']:.1f} | {r['steps_per_call']} | {note} |")
    d1, d100 = lad.get("dual/1", {}).get("ms_per_step"), lad.get("dual/100", {}).get("ms_per_step")
    if d1 and d100:
        L.append(f"\nGoal «100 vmapped seeds in at most 2× the time per step of 1 seed» (dual): {d100 / d1:.2f}× — "
                 f"{'met' if d100 <= 2 * d1 else 'not met'}.")
    L.append("")

    L.append("## The PyTorch + zuko peer on the same device\n")
    t = res.get("torch")
    if not t:
        L.append("Not run in this call (budget).\n")
    elif t.get("skipped"):
        L.append(f"Skipped: {t['skipped']}\n")
    else:
        L.append(f"`benchmarks/torch_peer.py`, eager PyTorch {t['torch']} on {t['device']}, one seed; best of 3 × "
                 f"{(t['dual_steps_timed'] - 3) // 3} steps after 3 warm-up steps. {t.get('note', '')}\n")
        L.append("| step | PyTorch ms/step | ours 1 seed ms/step | speedup (PyTorch ÷ ours) | 5 PyTorch runs one after another, ms | ours 5 vmapped ms | speedup |")
        L.append("|---|---|---|---|---|---|---|")
        for kind in ("dual", "nf"):
            pt = t.get(f"{kind}_ms_per_step")
            o1 = lad.get(f"{kind}/1", {}).get("ms_per_step")
            o5 = lad.get(f"{kind}/5", {}).get("ms_per_step")
            L.append(f"| {kind} | {_f(pt)} | {_f(o1)} | {_f(pt / o1 if pt and o1 else None, '{:.1f}×')} | {_f(5 * pt if pt else None)} "
                     f"| {_f(o5)} | {_f(5 * pt / o5 if pt and o5 else None, '{:.1f}×')} |")
        L.append(f"\nQuality beside speed: test NLL after the timed steps (from the same init scheme, "
                 f"{t['dual_steps_timed']} steps): PyTorch dual {_f(t.get('dual_test_nll_after'))}, NF {_f(t.get('nf_test_nll_after'))}; "
                 "the equality of the two implementations' test NLL at a fixed length is checked by the CPU peer benchmark.\n")

    L.append("## Paper-scale 40-GMM study (Appendix D.1)\n")
    st = res.get("study") or {}
    s = st.get("settings")
    if not s:
        L.append("Not reached in this call (budget).\n")
    else:
        L.append(f"{s['steps']:,} full-batch steps per run; dual and NF {s['seeds']} seeds each (one vmapped program each), "
                 f"P-W {len(s['pw_pairs'])} (w_fw, w_rv) pairs with w_prx = 1 as one vmapped program; test NLL of p_θ on the "
                 f"10,000 test points every {s['eval_every']} steps (ζ̂ from {s['eval_zeta']} samples). The three programs advance "
                 "one chunk each in turn.\n")
        L.append("| run | members | steps done | steps/s | projected wall for all steps (min) | compile s | eval s | last test NLL p_θ | best test NLL p_θ | diverged |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for name in ("dual", "nf", "pw"):
            r = st.get(name)
            if not r or not r["eval_steps"]:
                continue
            nll = np.asarray([[np.nan if v is None else v for v in row] for row in r["test_nll_p"]], np.float64)
            done = r["eval_steps"][-1]
            sps = done / r["run_s"] if r["run_s"] else float("nan")
            proj = (r["compile_s"] + s["steps"] / sps + r["eval_s"] * s["steps"] / done) / 60
            L.append(f"| {name} | {nll.shape[1]} | {done:,} | {sps:.0f} | {proj:.1f} | {r['compile_s']:.0f} | {r['eval_s']:.0f} | "
                     f"{_pm(nll[-1])} | {_pm(np.nanmin(nll, axis=0))} | {sum(d >= 0 for d in r['diverged_at'])} |")
        if st.get("wall_s"):
            L.append(f"\nWall time of the study (compiles, checkpoints and evaluations included, all calls): {st['wall_s'] / 60:.1f} min.")
        done_all = [st[k]["eval_steps"][-1] for k in ("dual", "nf", "pw") if st.get(k, {}).get("eval_steps")]
        if done_all and min(done_all) < s["steps"]:
            L.append(f"\n**Incomplete**: the study stopped at step {min(done_all):,} of {s['steps']:,} when the budget ran out; "
                     "the checkpoints in the resume archive continue it (see benchmarks/accelerator.sh --resume).")
        pw = st.get("pw")
        if pw and pw["eval_steps"]:
            L.append("\n| P-W (w_fw, w_rv) | last test NLL p_θ | best | diverged at |")
            L.append("|---|---|---|---|")
            last = pw["test_nll_p"][-1]
            for i, (a, b) in enumerate(s["pw_pairs"]):
                col = [row[i] for row in pw["test_nll_p"]]
                fin = [v for v in col if v is not None and math.isfinite(v)]
                L.append(f"| ({a:g}, {b:g}) | {_f(last[i])} | {_f(min(fin) if fin else None)} | {pw['diverged_at'][i] if pw['diverged_at'][i] >= 0 else '-'} |")
        L.append("\nCurves (every evaluation, every member) are in accelerator.json under `study`.")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse(argv)
    if args.torch_only:
        return torch_only(args.torch_only, args.tiny)
    if args.state_dir:
        # compiled programs persist beside the checkpoints, so a resumed call skips its compiles
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(args.state_dir / "xla_cache"))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
    bench = Bench(args)
    skip = set(filter(None, args.skip.split(",")))
    blocked: set = set()
    ladder = (1, 2) if args.tiny else LADDER
    first = [n for n in ladder if n in (1, 2, 5, 100)]
    if "ladder" not in skip:
        for name in ("dual", "nf"):
            for n in first:
                bench.ladder_point(name, n, blocked)
    if "torch" not in skip and bench.results.get("torch") is None and left(args) > 30:
        print("[torch] timing the PyTorch peer", flush=True)
        bench.results["torch"] = run_torch(args)
        print(f"[torch] {bench.results['torch']}", flush=True)
        bench.save()
    if "study" not in skip and left(args) > 60:
        bench.study()
    if "ladder" not in skip:
        for name in ("pw", "wgan"):
            for n in first:
                bench.ladder_point(name, n, blocked)
        for n in [n for n in ladder if n not in first]:
            for name in METHODS:
                bench.ladder_point(name, n, blocked)
    bench.save()
    print(f"wrote {args.out / 'accelerator.md'} ({time.time() - args.start:.0f} s, {left(args):.0f} s of the budget left)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
