"""Time to a converged posterior: our NF (NPE) and our dual, 5 seeds vmapped, against sbi's NPE
(issue 14 item 2), in one run on one CPU.

    python benchmarks/sbi_npe.py                   # two moons, N = 10^4 -> benchmarks/results/sbi_npe.{md,json}
    python benchmarks/sbi_npe.py --tiny            # small sizes: checks that it all runs
    python benchmarks/sbi_npe.py --methods nf      # our NF only (the dual at 10^4 needs hours here)

Needs the ``peer`` extra (``pip install -e '.[peer]'``: torch, zuko, sbi).

Protocol. The same ``--num-simulations`` simulations of two moons (ours, ``data_seed`` 0) for
every contender. sbi's NPE with its defaults (``NPE(density_estimator="nsf")``, ``train()``:
batch 200, Adam LR 5e-4, 10 % validation, stop after 20 epochs without improvement, best
parameters kept), one seed after another. Ours through ``adasym_jax.sbi.run.train_sbi``, i.e.
``runner.fit``, all seeds in one vmapped program, trained to convergence by the same rule:
10 % held out, patience 20 evaluations of one epoch each, each seed's best parameters; with
sbi's optimizer settings (batch 200, LR 5e-4) on D.4's models (``presets.sbi``: flow 4 × 8
bins; the dual's EBM, LRs of ψ and λ and ε_ζ as D.4). Wall time of training only (our compile
time reported apart and included in "total"); scoring is not timed.

Scores: the SBI benchmark's C2ST (MLP, 5-fold, z-scored by the reference; ``sbi.c2st_mlp``)
of ``--num-samples`` posterior samples against as many exact posterior samples, at each of
``--observations`` observations drawn from the prior predictive (fixed key; not sbibm's own
ten files, which are not installed here), averaged over observations, then mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench2d import command_line, device_string, pm  # noqa: E402

from adasym_jax.presets import sbi as sbi_preset  # noqa: E402
from adasym_jax.runner import steps_per_epoch, validation_split  # noqa: E402
from adasym_jax.sbi.c2st import c2st_mlp  # noqa: E402
from adasym_jax.sbi.run import train_sbi  # noqa: E402
from adasym_jax.sbi.tasks import get_task, simulate_dataset  # noqa: E402

NPE = {"batch_size": 200, "lr": 5e-4, "validation_fraction": 0.1, "patience": 20}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-simulations", type=int, default=10_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--observations", type=int, default=10)
    p.add_argument("--num-samples", type=int, default=10_000, help="posterior and reference samples per C2ST")
    p.add_argument("--methods", default="nf,sbi,adasym", help="comma-separated: nf (ours), adasym (ours), sbi (sbi's NPE)")
    p.add_argument("--max-steps", type=int, default=50_000, help="our NF's cap (steps) for a run to convergence")
    p.add_argument("--dual-max-steps", type=int, default=4000, help="our dual's cap (steps): D.4's dual step costs ~10x NF's, so on a 2-core CPU it is capped; the row says whether seeds converged")
    p.add_argument("--tiny", action="store_true", help="N = 600, 2 seeds, 2 observations, 500 samples, patience 2")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = p.parse_args(argv)
    a.patience = NPE["patience"]
    if a.tiny:
        a.num_simulations, a.seeds, a.observations, a.num_samples, a.patience, a.max_steps, a.dual_max_steps = 600, 2, 2, 500, 2, 60, 60
        a.out = os.path.join(a.out, "tiny")
    return a


def observations(task, num: int) -> np.ndarray:
    """``num`` observations from the prior predictive (fixed key)."""
    _, u = simulate_dataset(task, jax.random.PRNGKey(2026), num)
    return np.asarray(u, np.float32)


def references(task, obs: np.ndarray, num: int) -> list[np.ndarray]:
    return [np.asarray(task.posterior(jax.random.PRNGKey(100 + j), u, num), np.float32) for j, u in enumerate(obs)]


def score(samples_at, refs: list[np.ndarray], seeds: int) -> np.ndarray:
    """``(seeds,)`` C2ST (MLP) averaged over observations; ``samples_at(j) -> (seeds, num, d)``."""
    per = np.zeros((seeds, len(refs)))
    for j, ref in enumerate(refs):
        smp = samples_at(j)
        for s in range(seeds):
            per[s, j] = c2st_mlp(ref, smp[s], seed=s)
    return per.mean(axis=1)


def ours(task, method: str, beta, u, obs, refs, args) -> dict:
    cfg = sbi_preset(task, method).config.replace(batch_size=NPE["batch_size"], lr_flow=NPE["lr"])
    n_train = len(validation_split(len(beta), NPE["validation_fraction"])[0])
    epoch = steps_per_epoch(cfg, n_train)
    cap = args.max_steps if method == "nf" else args.dual_max_steps
    t0 = time.perf_counter()
    r = train_sbi(
        task, len(beta), method, seeds=args.seeds, steps=cap, eval_every=epoch, config=cfg, data=(beta, u),
        patience=args.patience, validation_fraction=NPE["validation_fraction"], c2st_curve=False, mlp_c2st=False,
        num_posterior_samples=200, reference_draws=refs[0][:200], observation=obs[0], progress=True,
    )
    wall = time.perf_counter() - t0
    steps = int(r.eval_steps[-1])
    train_s = steps / r.steps_per_second
    key = jax.random.PRNGKey(7)
    c2st = score(lambda j: r.sample_posterior(jax.random.fold_in(key, j), args.num_samples, obs[j]), refs, args.seeds)
    stopped = np.asarray(r.settings["stopped_step"])
    print(f"ours {method}: {train_s:.1f} s training + {r.compile_seconds:.1f} s compile, stopped at epochs {stopped / epoch}, C2ST {pm(c2st)}", flush=True)
    return {
        "contender": f"ours {method} ({args.seeds} seeds vmapped)",
        "train_seconds": train_s,
        "compile_seconds": r.compile_seconds,
        "total_seconds": train_s + r.compile_seconds,
        "wall_seconds_incl_final_scoring": wall,
        "epochs": (stopped / epoch).tolist(),
        "cap_steps": cap,
        "converged": bool(np.all(stopped < cap)),
        "steps_per_epoch": epoch,
        "c2st_mlp": c2st.tolist(),
        "config": cfg.to_dict(),
    }


def sbi_npe(beta, u, obs, refs, args) -> dict:
    import torch

    here = Path(__file__).resolve().parent  # benchmarks/sbi.py would shadow the sbi package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from sbi.inference import NPE as SbiNPE
    from sbi.utils import BoxUniform

    torch.set_num_threads(os.cpu_count() or 1)
    theta, x = torch.as_tensor(beta), torch.as_tensor(u)
    prior = BoxUniform(low=-torch.ones(2), high=torch.ones(2))
    seconds, epochs, samples = [], [], []
    kwargs = {} if not args.tiny else {"stop_after_epochs": args.patience}
    for s in range(args.seeds):
        torch.manual_seed(s)
        inference = SbiNPE(prior=prior, density_estimator="nsf", show_progress_bars=False)
        t0 = time.perf_counter()
        estimator = inference.append_simulations(theta, x).train(**kwargs)
        seconds.append(time.perf_counter() - t0)
        epochs.append(int(inference._summary["epochs_trained"][-1]))
        posterior = inference.build_posterior(estimator)
        samples.append([posterior.sample((args.num_samples,), x=torch.as_tensor(o), show_progress_bars=False).numpy() for o in obs])
        print(f"sbi NPE seed {s}: {seconds[-1]:.1f} s, {epochs[-1]} epochs", flush=True)
    c2st = score(lambda j: np.stack([samples[s][j] for s in range(args.seeds)]), refs, args.seeds)
    import sbi

    return {
        "contender": f"sbi {sbi.__version__} NPE (NSF, defaults; {args.seeds} seeds one after another)",
        "train_seconds": float(np.sum(seconds)),
        "compile_seconds": 0.0,
        "total_seconds": float(np.sum(seconds)),
        "per_seed_seconds": seconds,
        "epochs": epochs,
        "c2st_mlp": c2st.tolist(),
    }


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task("two_moons")
    beta, u = simulate_dataset(task, jax.random.PRNGKey(0), args.num_simulations)
    obs = observations(task, args.observations)
    refs = references(task, obs, args.num_samples)
    rows = []
    for m in filter(None, args.methods.split(",")):
        if m == "sbi":
            rows.append(sbi_npe(beta, u, obs, refs, args))
        elif m in ("nf", "adasym"):
            rows.append(ours(task, m, beta, u, obs, refs, args))
        else:
            raise SystemExit(f"unknown method {m!r}")
        write(rows, args, out)
    return 0


def write(rows: list[dict], args, out: Path) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"command": command_line(), "commit": commit, "device": device_string(), "num_simulations": args.num_simulations,
            "seeds": args.seeds, "observations": args.observations, "num_samples": args.num_samples, "npe_settings": NPE}
    (out / "sbi_npe.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# Time to a converged posterior: ours against sbi's NPE (two moons)",
        "",
        f"Command: `{meta['command']}` at commit `{commit}`. Device: {meta['device']}.",
        f"N = {args.num_simulations} simulations, {args.seeds} seeds, C2ST (SBI benchmark: MLP, 5-fold) of "
        f"{args.num_samples} samples at {args.observations} prior-predictive observations, averaged; mean ± std over seeds.",
        "Training to convergence by sbi's rule for all: 10 % validation, patience 20 epochs, best parameters.",
        f"Ours: D.4's models with sbi's optimizer settings (batch {NPE['batch_size']}, LR θ {NPE['lr']:g}); our dual capped at "
        f"{args.dual_max_steps} steps on this CPU. Timings from one run on an otherwise idle machine; scoring is not timed.",
        "",
        "| contender | training s | compile s | total s | epochs (per seed) | C2ST (MLP) |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        ep = ", ".join(f"{e:.0f}" for e in r["epochs"]) + ("" if r.get("converged", True) else f" (cap {r['cap_steps']} steps reached)")
        lines.append(f"| {r['contender']} | {r['train_seconds']:.1f} | {r['compile_seconds']:.1f} | {r['total_seconds']:.1f} | {ep} | {pm(r['c2st_mlp'])} |")
    (out / "sbi_npe.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
