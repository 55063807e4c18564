"""Our NF (NPE) and dual against sbi's NPE, trained to convergence on the same simulations:
C2ST by both protocols and wall time to convergence (issue 13's "our NF must match sbi's NPE",
issue 14 item 2), in one run on one CPU.

    python benchmarks/sbi_npe.py                          # two moons, N = 10^4: ours NF, dual, sbi -> results/sbi_npe.{md,json}
    python benchmarks/sbi_npe.py --tiny                   # small sizes: checks that it all runs
    python benchmarks/sbi_npe.py --task gaussian_mixture_wide --num-simulations 1000,10000,100000 --methods nf --name sbi_nf_gmm
    python benchmarks/sbi_npe.py --optimizer paper --methods nf --name sbi_npe_paper_opt   # our NF with C.3's Adam (0, 0.9)
    python benchmarks/sbi_npe.py --methods adasym --flow nsf --set lr_ebm=1e-4 --name sbi_dual_diag  # any TrainConfig field (--set, repeatable)
    python benchmarks/sbi_npe.py --num-simulations 1000 --methods nf,adasym --patience 200 --name sbi_patience  # stop after 200 epochs without gain, not 20
    python benchmarks/sbi_npe.py --num-simulations 1000 --methods nf --within-prior --name sbi_in_prior  # our samples rejected outside the prior, as sbi's

Needs the ``peer`` extra for the sbi rows (``pip install -e '.[peer]'``: torch, zuko, sbi).
Rows already in the output JSON with the same settings are kept and not rerun (``--fresh``
reruns them), so a matrix interrupted between rows continues where it stopped.

Protocol. The same ``N`` simulations of the task (``data_seed`` 0) for every contender.
sbi's NPE with its defaults (``NPE(density_estimator="nsf")``: 5 coupling transforms × 10
bins, residual conditioners of width 50, z-scored β and u; ``train()``: batch 200, Adam LR
5e-4 with torch's β (0.9, 0.999), gradient norm clipped at 5, 10 % validation, stop after 20
epochs without improvement, best parameters kept; samples rejected outside the prior box), one
seed after another. Ours through ``adasym_jax.sbi.run.train_sbi`` (``runner.fit``), all seeds
in one vmapped program, by the same stopping rule (10 % held out, patience 20 evaluations of
one epoch each or ``--patience``'s, each seed's best parameters) with sbi's batch and LR on D.4's models
(``presets.sbi``: flow 4 × 8 bins, conditioner 64-64; the dual's EBM, ψ and λ rates and ε_ζ
as D.4) and, with ``--optimizer npe`` (default), sbi's Adam β and clipping; ``paper`` keeps
C.3's Adam (0, 0.9) without clipping. The contexts u are z-scored by the training simulations'
mean and std before our models see them (sbi does the same; an affine map of u leaves
p(β | u) unchanged), and the observations with them. Our samples are not rejected outside the
prior unless ``--within-prior`` (then by rejection, as sbi's); the fraction of them inside the
prior box is recorded either way (``prior_acceptance``). Wall time is training only (our compile time apart, and in "total"); scoring is not timed.

Scores, at ``--observations`` observations drawn from the prior predictive (fixed key; not
sbibm's ten files, which are not installed here), averaged over them, then mean ± std over
seeds; and at the paper's u₀ alone (and always the exact NLL −log p(β | u) on 10⁴ fresh
simulations, a low-noise measure of the same fit): the SBI benchmark's C2ST (MLP, 5-fold, z-scored by the
reference; ``c2st_mlp``) and the paper's (HistGradientBoosting, 70/30; ``c2st_paper``), each
of ``--num-samples`` posterior samples against as many exact posterior samples.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench2d import command_line, compact_json, device_string, git_commit, notes_lines, pm  # noqa: E402

from adasym_jax.checkpoint import Standardization  # noqa: E402
from adasym_jax.cli_args import add_set_argument, apply_overrides  # noqa: E402

from adasym_jax.presets import sbi as sbi_preset  # noqa: E402
from adasym_jax.runner import steps_per_epoch, validation_split  # noqa: E402
from adasym_jax.sbi.c2st import c2st_mlp, c2st_paper  # noqa: E402
from adasym_jax.sbi.run import train_sbi  # noqa: E402
from adasym_jax.sbi.tasks import TASKS, get_task, in_prior, simulate_dataset  # noqa: E402

NPE = {"batch_size": 200, "lr": 5e-4, "validation_fraction": 0.1, "patience": 20}
#: TrainConfig fields per --optimizer: sbi's train() (torch Adam defaults, clip_max_norm 5) or C.3's
OPTIMIZERS = {"npe": {"adam_b1": 0.9, "adam_b2": 0.999, "grad_clip": 5.0}, "paper": {}}
#: TrainConfig fields per --flow: D.4's (4 transforms x 8 bins, conditioner 64-64, bound 5), sbi's NSF sizes
#: (5 transforms x 10 bins, width 50, tail bound 3) on our autoregressive flow (npe), or sbi's NSF itself
#: (nsf: those sizes on couplings with residual conditioners of 2 blocks and an LU linear layer after each)
_NPE_SIZES = {"num_transforms": 5, "num_bins": 10, "flow_hidden": (50, 50), "bound": 3.0}
FLOWS = {"d4": {}, "npe": _NPE_SIZES, "nsf": {**_NPE_SIZES, "flow": "nsf"}}
#: issue 13's bar: sbi 0.27 NPE (NSF defaults, to convergence) at N = 10^3 / 10^4 / 10^5, SBI benchmark C2ST
SBI_NPE_REFERENCE = {"two_moons": (0.70, 0.55, 0.53), "gaussian_mixture_wide": (0.67, 0.54, 0.52)}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="two_moons", choices=sorted(TASKS))
    p.add_argument("--num-simulations", default="10000", help="comma-separated list, one block of rows each")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--observations", type=int, default=10)
    p.add_argument("--num-samples", type=int, default=10_000, help="posterior and reference samples per C2ST")
    p.add_argument("--methods", default="nf,sbi,adasym", help="comma-separated: nf (ours), adasym (ours), sbi (sbi's NPE)")
    p.add_argument("--optimizer", default="npe", choices=sorted(OPTIMIZERS), help="our models' Adam: sbi's (0.9, 0.999) + clip 5, or the paper's (0, 0.9)")
    p.add_argument("--standardize", default="zscore", choices=("zscore", "auto"), help="β for our models: z-scored as sbi does, or only when it leaves the splines' range (the library's default)")
    p.add_argument("--flow", default="d4", choices=sorted(FLOWS), help="our flow's sizes: D.4's or sbi's NSF's")
    add_set_argument(p, "overrides", "TrainConfig fields for our models, applied last, one or more per flag (e.g. --set lr_ebm=1e-4); each row records them")
    p.add_argument("--no-c2st", action="store_true", help="skip the C2ST scoring (minutes per row); the test NLL is always computed")
    p.add_argument("--max-steps", type=int, default=50_000, help="our NF's cap (steps) for a run to convergence")
    p.add_argument("--dual-max-steps", type=int, default=4000, help="our dual's cap (steps): D.4's dual step costs ~10x NF's, so on a 2-core CPU it is capped; the row says whether seeds converged")
    p.add_argument("--fixed-length", action="store_true",
                   help="our models train exactly --max-steps (NF) / --dual-max-steps (dual) steps, as the paper trains, and the last "
                        "state is scored; the 10 %% validation split is still held out and its curve recorded, but nothing stops early")
    p.add_argument("--patience", type=int, default=NPE["patience"],
                   help="epochs without a better validation NLL before a run stops (sbi's default 20), for every method of the row; "
                        "a value other than 20 enters the row's key and label")
    p.add_argument("--within-prior", action="store_true",
                   help="reject our posterior samples outside the prior box before C2ST, as sbi does its own (enters the row's key and label)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes scoring C2ST (not timed)")
    p.add_argument("--tiny", action="store_true", help="N = 600, 2 seeds, 2 observations, 500 samples, patience 2")
    p.add_argument("--name", default="sbi_npe", help="results file stem")
    p.add_argument("--fresh", action="store_true", help="rerun rows already in the results JSON")
    p.add_argument("--render", action="store_true", help="only rewrite the Markdown from the results JSON")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = p.parse_args(argv)
    a.sizes = [int(v) for v in a.num_simulations.split(",") if v]
    if a.patience < 1:
        p.error(f"--patience must be at least 1 epoch, got {a.patience}")
    if a.fixed_length and a.patience != NPE["patience"]:
        p.error("--patience and --fixed-length exclude each other: a fixed-length run does not stop early")
    a.patience = None if a.fixed_length else a.patience
    check_overrides(a)
    if a.tiny:
        a.sizes, a.seeds, a.observations, a.num_samples, a.max_steps, a.dual_max_steps = [600], 2, 2, 500, 60, 60
        a.patience = None if a.fixed_length else 2
        a.out = os.path.join(a.out, "tiny")
    return a


#: --set keys that would change what a row is rather than how it trains
_FIXED_KEYS = ("method", "context_dim")


def our_config(task, method: str, args):
    """Our model's TrainConfig for a row: D.4's preset, sbi's batch and LR, the --optimizer and
    --flow choices, then the --set overrides."""
    cfg = sbi_preset(task, method).config.replace(batch_size=NPE["batch_size"], lr_flow=NPE["lr"], **OPTIMIZERS[args.optimizer], **FLOWS[args.flow])
    return apply_overrides(cfg, args.overrides)


def check_overrides(args) -> None:
    """A bad --set (unknown key, bad value, a key fixed by the row): one line, exit 1, before
    anything is simulated or compiled."""
    try:
        for text in args.overrides:
            if text.split("=", 1)[0].strip() in _FIXED_KEYS:
                raise ValueError(f"--set {text}: {', '.join(_FIXED_KEYS)} are fixed by --methods and the task")
        task = get_task(args.task)
        for m in {"nf", "adasym"} & set(args.methods.split(",")):
            our_config(task, m, args)
    except ValueError as e:
        raise SystemExit(f"sbi_npe.py: error: {e}") from None


def observations(task, num: int) -> np.ndarray:
    """``num`` observations from the prior predictive (fixed key), then the paper's u₀: ``(num + 1, k)``."""
    _, u = simulate_dataset(task, jax.random.PRNGKey(2026), num)
    return np.concatenate([np.asarray(u, np.float32), np.asarray(task.observation, np.float32)[None]])


def references(task, obs: np.ndarray, num: int) -> list[np.ndarray]:
    return [np.asarray(task.posterior(jax.random.PRNGKey(100 + j), u, num), np.float32) for j, u in enumerate(obs)]


def _both(ref: np.ndarray, smp: np.ndarray, seed: int) -> tuple[float, float]:
    return c2st_mlp(ref, smp, seed=seed), c2st_paper(ref, smp, seed=seed)


def score(samples: np.ndarray, refs: list[np.ndarray], jobs: int) -> dict:
    """C2ST of ``samples (S, J + 1, num, d)`` against ``refs`` (J prior-predictive observations,
    then u₀), both protocols, in ``jobs`` single-threaded processes (sklearn's MLP on 2 × 10⁴
    points takes ~10 s per 5-fold test here; a JAX version vmapped over all folds of all pairs
    was slower on this CPU, because finished members keep costing until the last one stops)."""
    seeds, n_obs = samples.shape[:2]
    pairs = [(refs[j], samples[s, j], s) for s in range(seeds) for j in range(n_obs)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        out = np.array(list(pool.map(_both, *zip(*pairs)))).reshape(seeds, n_obs, 2)
    print(f"scored {len(pairs)} pairs in {time.perf_counter() - t0:.0f} s", flush=True)
    return {
        "c2st_mlp": out[:, :-1, 0].mean(axis=1).tolist(),
        "c2st_paper": out[:, :-1, 1].mean(axis=1).tolist(),
        "c2st_mlp_u0": out[:, -1, 0].tolist(),
        "c2st_paper_u0": out[:, -1, 1].tolist(),
        "c2st_mlp_per_observation": out[:, :-1, 0].tolist(),
    }


def test_set(task, num: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Fresh simulations (key 1) on which every contender's exact NLL −log p(β | u) is measured."""
    return tuple(np.asarray(a, np.float32) for a in simulate_dataset(task, jax.random.PRNGKey(1), num))


def ours(task, method: str, beta, u, obs, refs, test, args) -> dict:
    cfg = our_config(task, method, args)
    train_idx = validation_split(len(beta), NPE["validation_fraction"])[0]
    ctx = Standardization.fit(u[train_idx])  # the training simulations' u, as sbi's z_score_x="independent"
    u_z, obs_z = (np.asarray(ctx.apply(a), np.float32) for a in (u, obs))
    epoch = steps_per_epoch(cfg, len(train_idx))
    cap = args.max_steps if method == "nf" else args.dual_max_steps
    t0 = time.perf_counter()
    r = train_sbi(
        task, len(beta), method, seeds=args.seeds, steps=cap, eval_every=epoch, config=cfg, data=(beta, u_z),
        patience=args.patience, validation_fraction=NPE["validation_fraction"], c2st_curve=False, mlp_c2st=False,
        num_posterior_samples=200, reference_draws=refs[-1][:200], observation=obs_z[-1], progress=True,
        standardize=True if args.standardize == "zscore" else "auto",
    )
    wall = time.perf_counter() - t0
    steps = int(r.eval_steps[-1])
    train_s = steps / r.steps_per_second
    std = r.standardization()
    b_test = test[0] if std is None else np.asarray(std.apply(test[0]), np.float32)
    shift = 0.0 if std is None else float(std.log_det)
    test_nll = -np.asarray(r.trainer.log_prob(r.state, b_test, np.asarray(ctx.apply(test[1]), np.float32)), np.float64).mean(axis=1) + shift
    val = np.asarray(r.curves["val_nll"], np.float64)  # (seeds, evaluations) at r.eval_steps
    if args.patience is None:  # fixed length: every seed ran the whole cap; the last state is the one scored
        stopped = np.full(len(val), int(r.eval_steps[-1]))
        finite = np.isfinite(val).any(axis=1)  # a seed that diverged at once has no best: -1
        best = np.where(finite, np.asarray(r.eval_steps)[np.nanargmin(np.where(finite[:, None], val, 0.0), axis=1)], -1)
    else:
        stopped, best = np.asarray(r.settings["stopped_step"]), np.asarray(r.settings["best_step"])
    row = {
        "contender": f"ours {method} ({args.seeds} seeds vmapped; optimizer {args.optimizer}, β {args.standardize}, flow {args.flow}"
                     + "".join(f", {o}" for o in args.overrides) + (f", fixed length {cap} steps, last state" if args.patience is None else "")
                     + patience_label(args) + (", samples rejected outside the prior" if args.within_prior else "") + ")",
        "method": method,
        "train_seconds": train_s,
        "compile_seconds": r.compile_seconds,
        "total_seconds": train_s + r.compile_seconds,
        "wall_seconds_training_call": wall,
        "epochs": (stopped / epoch).tolist(),
        "best_epochs": (best / epoch).tolist(),
        "fixed_length": args.patience is None,
        "cap_steps": cap,
        "converged": None if args.patience is None else bool(np.all(stopped < cap)),
        "steps_per_epoch": epoch,
        "config": cfg.to_dict(),
        "test_nll": test_nll.tolist(),
        "val_curves": [[float(v) for v in c if np.isfinite(v)] for c in val],
    }
    if args.patience is None:  # the multipliers and ζ̂ along the run (epoch means), to see what holds p_θ back
        row["eval_steps"] = [int(v) for v in r.eval_steps]
        row["train_curves"] = {k: np.asarray(v, np.float64).tolist() for k, v in r.curves.items() if k != "val_nll"}
        row["val_curves_full"] = val.tolist()  # every evaluation, NaN (null) after a seed diverged: aligned with eval_steps
    print(f"ours {method} N={len(beta)}: {train_s:.1f} s training + {r.compile_seconds:.1f} s compile, stopped at epochs {stopped / epoch}, "
          f"test NLL {pm(test_nll)}", flush=True)
    if not args.no_c2st:
        key = jax.random.PRNGKey(7)
        if args.within_prior:  # rejection: each observation's acceptance is the fraction inside the box
            drawn = [r.sample_posterior_in_prior(task, jax.random.fold_in(key, j), args.num_samples, o) for j, o in enumerate(obs_z)]
            samples, inside = np.stack([d[0] for d in drawn], axis=1), np.stack([d[1] for d in drawn], axis=1)
        else:
            samples = np.stack([r.sample_posterior(jax.random.fold_in(key, j), args.num_samples, o) for j, o in enumerate(obs_z)], axis=1)
            inside = np.asarray(in_prior(task, samples), np.float64).mean(axis=-1)  # (S, J + 1)
        row["prior_acceptance"] = inside[:, :-1].mean(axis=1).tolist()  # mean over the prior-predictive observations
        row["prior_acceptance_u0"] = inside[:, -1].tolist()
        row.update(score(samples, refs, args.jobs))
    return row


def sbi_npe(task, beta, u, obs, refs, test, args) -> dict:
    import torch

    here = Path(__file__).resolve().parent  # benchmarks/sbi.py would shadow the sbi package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import sbi
    from sbi.inference import NPE as SbiNPE
    from sbi.utils import BoxUniform

    torch.set_num_threads(os.cpu_count() or 1)
    theta, x = torch.as_tensor(np.array(beta)), torch.as_tensor(np.array(u))  # writable copies
    prior = BoxUniform(low=torch.as_tensor(task.prior_low, dtype=torch.float32), high=torch.as_tensor(task.prior_high, dtype=torch.float32))
    seconds, epochs, samples, test_nll, val_curves = [], [], [], [], []
    kwargs = {"stop_after_epochs": custom_patience(args)} if custom_patience(args) else {}  # sbi's default is 20
    for s in range(args.seeds):
        torch.manual_seed(s)
        inference = SbiNPE(prior=prior, density_estimator="nsf", show_progress_bars=False)
        t0 = time.perf_counter()
        estimator = inference.append_simulations(theta, x).train(**kwargs)
        seconds.append(time.perf_counter() - t0)
        epochs.append(int(inference._summary["epochs_trained"][-1]))
        val_curves.append([float(v) for v in inference._summary["validation_loss"]])
        with torch.no_grad():  # the estimator's own density (before the prior-box rejection), in β's units
            test_nll.append(-float(estimator.log_prob(torch.as_tensor(test[0])[None], condition=torch.as_tensor(test[1])).mean()))
        if not args.no_c2st:
            posterior = inference.build_posterior(estimator)
            samples.append([posterior.sample((args.num_samples,), x=torch.as_tensor(o), show_progress_bars=False).numpy() for o in obs])
        print(f"sbi NPE N={len(beta)} seed {s}: {seconds[-1]:.1f} s, {epochs[-1]} epochs, test NLL {test_nll[-1]:.4f}", flush=True)
    row = {
        "contender": f"sbi {sbi.__version__} NPE (NSF, defaults; {args.seeds} seeds one after another{patience_label(args)})",
        "method": "sbi",
        "train_seconds": float(np.sum(seconds)),
        "compile_seconds": 0.0,
        "total_seconds": float(np.sum(seconds)),
        "per_seed_seconds": seconds,
        "epochs": epochs,
        "test_nll": test_nll,
        "val_curves": val_curves,
    }
    if not args.no_c2st:
        row.update(score(np.asarray(samples, np.float32), refs, args.jobs))
    return row


def row_key(task: str, n: int, method: str, args) -> dict:
    """What a stored row must match to be reused."""
    return {"task": task, "num_simulations": n, "method": method, "seeds": args.seeds, "observations": args.observations,
            "num_samples": args.num_samples, "optimizer": None if method == "sbi" else args.optimizer, "c2st": not args.no_c2st,
            "standardize": None if method == "sbi" else args.standardize, "flow": None if method == "sbi" else args.flow,
            "cap_steps": None if method == "sbi" else (args.max_steps if method == "nf" else args.dual_max_steps),
            **({"overrides": list(args.overrides)} if args.overrides and method != "sbi" else {}),
            **({"fixed_length": True} if args.fixed_length and method != "sbi" else {}),
            **({"patience": custom_patience(args)} if custom_patience(args) else {}),
            **({"within_prior": True} if args.within_prior and method != "sbi" else {})}


def custom_patience(args) -> int | None:
    """The patience when it is not sbi's 20 epochs; None for 20 and for fixed length (nothing stops early)."""
    return args.patience if args.patience not in (None, NPE["patience"]) else None


def patience_label(args) -> str:
    """The contender label's mention of a patience other than sbi's 20 epochs ('' for 20 and fixed length)."""
    return f", patience {custom_patience(args)} epochs" if custom_patience(args) else ""


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in ("nf", "adasym", "sbi"):
            raise SystemExit(f"unknown method {m!r}; choose from nf, adasym, sbi")
    path = out / f"{args.name}.json"
    if args.render:
        stored = json.loads(path.read_text())
        write(stored["rows"], args, out, meta=stored["meta"])
        return 0
    stored = [] if args.fresh or not path.exists() else json.loads(path.read_text())["rows"]
    task = get_task(args.task)
    rows = list(stored)
    for n in args.sizes:
        beta, u = (np.asarray(a, np.float32) for a in simulate_dataset(task, jax.random.PRNGKey(0), n))
        obs = observations(task, args.observations)
        refs = references(task, obs, args.num_samples)
        test = test_set(task)
        for m in methods:
            key = row_key(args.task, n, m, args)
            if any(r.get("key") == key for r in stored):
                print(f"{m} N={n}: kept from {path}", flush=True)
                continue
            row = sbi_npe(task, beta, u, obs, refs, test, args) if m == "sbi" else ours(task, m, beta, u, obs, refs, test, args)
            row["key"] = key
            row["command"] = command_line()
            row["commit"] = git_commit()
            rows = [r for r in rows if r.get("key") != key] + [row]
            write(rows, args, out)
    return 0


def cell(row: dict, name: str) -> str:
    return pm(row[name]) if name in row else "–"


def write(rows: list[dict], args, out: Path, meta: dict | None = None) -> None:
    """The JSON (rows and the run's ``meta``: command, commit, device) and its Markdown table;
    ``meta`` given (``--render``): the stored one, kept."""
    meta = meta or {"command": command_line(), "commit": git_commit(), "device": device_string(), "task": args.task,
            "seeds": args.seeds, "observations": args.observations, "num_samples": args.num_samples, "npe_settings": NPE,
            "optimizer": {args.optimizer: OPTIMIZERS[args.optimizer]}}
    (out / f"{args.name}.json").write_text(compact_json({"meta": meta, "rows": rows}) + "\n")
    task = meta.get("task", args.task)  # --render: the stored run's task, not this command's default
    ref = SBI_NPE_REFERENCE.get(task)
    lines = [
        f"# Ours against sbi's NPE, trained to convergence ({task})",
        "",
        f"Last command: `{meta['command']}` at commit `{meta['commit']}`; each row's own command and commit are in the JSON. Device: {meta['device']}.",
        f"{args.seeds} seeds. C2ST of {args.num_samples} posterior samples against as many exact ones: SBI benchmark "
        f"(MLP, 5-fold, z-scored) and the paper's (HistGradientBoosting, 70/30), averaged over {args.observations} "
        "prior-predictive observations, and at the paper's u₀; mean ± std over seeds (0.5 is best).",
        "Training to convergence by sbi's rule for all (10 % validation, patience 20 epochs unless the row names another, best parameters) "
        "but rows marked 'fixed length': those train exactly their cap with the same 10 % held out, and the last state is scored.",
        "Test NLL: −log p(β | u) in β's units on 10⁴ fresh simulations (sbi: its estimator's density, before the prior-box rejection).",
        "In prior: the fraction of our p_θ's samples inside the prior box, mean over the prior-predictive observations (u₀'s in the JSON; "
        "our rows stored before this column and sbi's rows show –); "
        "sbi always rejects its samples outside the box, ours only in rows marked 'samples rejected outside the prior'.",
        f"Ours: sbi's batch {NPE['batch_size']} and LR θ {NPE['lr']:g}; each row names our optimizer (npe: Adam (0.9, 0.999), "
        "gradient norm clipped at 5; paper: C.3's Adam (0, 0.9)), β's handling (zscore as sbi; auto: only outside the splines' range) "
        "and flow (d4: D.4's 4 × 8 bins, 64-64, bound 5; npe: sbi's sizes 5 × 10, 50-50, bound 3 on our autoregressive flow; "
        "nsf: sbi's NSF, those sizes on couplings with residual conditioners and LU layers); rows without a flow are d4, "
        "without β auto. u z-scored by the training simulations. Timings from one run on an otherwise idle machine; scoring is not timed.",
    ]
    if ref:
        lines.append(f"Bar (issue 13): sbi 0.27's NPE on the SBI benchmark scores {ref[0]} / {ref[1]} / {ref[2]} at N = 10³ / 10⁴ / 10⁵; ours must be within 0.02.")
    lines += [
        "",
        f"| N | contender | training s | compile s | total s | epochs (per seed) | test NLL | in prior | C2ST MLP ({args.observations} obs) | C2ST paper ({args.observations} obs) | C2ST MLP at u₀ | C2ST paper at u₀ | commit |",
        "| ---: | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: r["key"]["num_simulations"]):
        ep = ", ".join(f"{e:.0f}" for e in r["epochs"]) + (f" (cap {r['cap_steps']} steps reached)" if cap_reached(r) else "")
        lines.append(
            f"| {r['key']['num_simulations']} | {r['contender']} | {r['train_seconds']:.1f} | {r['compile_seconds']:.1f} | {r['total_seconds']:.1f} | {ep} "
            f"| {cell(r, 'test_nll')} | {cell(r, 'prior_acceptance')} | {cell(r, 'c2st_mlp')} | {cell(r, 'c2st_paper')} | {cell(r, 'c2st_mlp_u0')} | {cell(r, 'c2st_paper_u0')} | `{r.get('commit', '–')}` |"
        )
    dual = any(r.get("method") == "adasym" for r in rows)
    obs = meta.get("observations", args.observations)
    scored = any(column in r for r in rows for column, _ in C2ST_PANELS)  # no C2ST anywhere (--no-c2st): no Figure 6
    lines += [] if not scored else ["", f"Figure 6 as the paper draws it (C2ST against N, mean ± std over seeds): left the SBI benchmark's protocol over "
              f"{obs} observations, right the paper's at u₀ only: `{args.name}_c2st.png`"
              + ("." if dual else "; no dual row here yet, so it shows the NPE side only.")]
    if plot_dual_curves(rows, out / f"{args.name}_curves.png"):
        lines += ["", f"The fixed-length dual rows' curves per epoch (validation NLL, the KL and ζ multipliers, ζ̂, q_ψ's proxy NLL, reverse KL; one line per seed, one row of panels per run): `{args.name}_curves.png`."]
    lines += notes_lines(out / f"{args.name}_notes.md")  # hand-written remarks, kept when the file is rewritten
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    if scored:
        plot_c2st(rows, task, ref, out / f"{args.name}_c2st.png", observations=obs)


#: C2ST columns drawn by :func:`plot_c2st`: the SBI benchmark's protocol and the paper's at u₀.
C2ST_PANELS = (("c2st_mlp", "SBI benchmark: MLP, 5-fold, {obs} observations"), ("c2st_paper_u0", "paper: HistGradientBoosting at u₀"))


def cap_reached(row: dict) -> bool:
    """Whether a row trained to convergence stopped at its cap with some seed unconverged (False for
    sbi's rows, which have no cap, and for fixed-length rows, whose cap is their length)."""
    return row.get("converged", True) is False


def curve_label(row: dict) -> str:
    """A row's line in Figure 6: its contender, and its cap when a seed reached it."""
    return row["contender"] + (f", not converged (cap {row.get('cap_steps')} steps)" if cap_reached(row) else "")


def c2st_curves(rows: list[dict], column: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each line's (:func:`curve_label`) ``(N, mean, std)`` of ``column`` over seeds, N ascending;
    rows without that column are left out, and of two rows with the same line and N the later wins."""
    points: dict[str, dict[int, tuple[float, float]]] = {}
    for r in rows:
        if column in r:
            v = np.asarray(r[column], np.float64)
            points.setdefault(curve_label(r), {})[r["key"]["num_simulations"]] = (np.nanmean(v), np.nanstd(v))
    curves = {}
    for label, p in points.items():
        ns = sorted(p)
        curves[label] = (np.asarray(ns), np.asarray([p[n][0] for n in ns]), np.asarray([p[n][1] for n in ns]))
    return curves


def plot_c2st(rows: list[dict], task: str, ref, path: Path, observations: int = 10) -> None:
    """Figure 6: C2ST against the number of simulations, one panel per protocol, one line per
    contender with mean ± std over seeds as error bars; sbi's published NPE values (``ref``, the
    reference numbers of issue 13, SBI benchmark protocol) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {column: c2st_curves(rows, column) for column, _ in C2ST_PANELS}
    contenders = list(dict.fromkeys(c for per_column in curves.values() for c in per_column))
    colours = {c: f"C{i % 10}" for i, c in enumerate(contenders)}  # one colour per contender in both panels
    labels = len(contenders) + bool(ref)
    # the labels (long: they name each row's settings) go in one legend under the panels, not over the points
    height = 4.2 + 0.2 * labels
    fig, axes = plt.subplots(1, len(C2ST_PANELS), figsize=(6 * len(C2ST_PANELS), height), sharey=True)
    handles: dict = {}
    for ax, (column, title) in zip(axes, C2ST_PANELS):
        title = title.format(obs=observations)
        for contender, (n, mean, std) in curves[column].items():
            handles[contender] = ax.errorbar(n, mean, yerr=std, marker="o", capsize=3, color=colours[contender])
        if ref and column == "c2st_mlp":
            handles["sbi NPE, published reference values (issue 13)"] = ax.plot([1e3, 1e4, 1e5], ref, "k--", marker="x")[0]
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set(xscale="log", xlabel="number of simulations N", title=title)
    axes[0].set_ylabel("C2ST (0.5 is best)")
    fig.suptitle(f"{task}: posterior quality against simulations (Figure 6)")
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, (0.2 * labels + 0.1) / height, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: What :func:`plot_dual_curves` draws of a fixed-length dual row, per epoch: (curve keys, panel title, y scale).
#: The ζ multipliers (LR 1e-2) and the EBM's proxy NLL show whether ζ's band binds and what ψ then does to q_ψ;
#: the ζ multipliers sit at 0 until the band binds, so their axis is linear.
DUAL_PANELS = ((("val_nll",), "validation NLL of p_θ", "linear"), (("lambda_fw", "lambda_rv", "lambda_prx"), "multipliers λ", "log"),
               (("lambda_zeta_u", "lambda_zeta_l"), "ζ multipliers", "linear"), (("log_zeta",), "log ζ̂ (training batch)", "linear"),
               (("prx_nll",), "q_ψ's proxy NLL (model units)", "linear"), (("rv_kl",), "reverse-KL estimate", "linear"))


def plot_dual_curves(rows: list[dict], path: Path) -> bool:
    """The fixed-length dual rows' training curves against epochs, one line per seed (multipliers
    one colour each, seeds overlaid; titles name the row's N and --set overrides): what the
    validation NLL does when nothing stops it, and what the multipliers (the KL ones and ζ's), ζ̂,
    q_ψ's proxy NLL and the reverse KL do meanwhile. False (nothing drawn) without such a row."""
    rows = [r for r in rows if r.get("method") == "adasym" and "train_curves" in r]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(DUAL_PANELS), figsize=(4.2 * len(DUAL_PANELS), 3.4 * len(rows)), squeeze=False)
    for i, r in enumerate(rows):
        epochs = np.asarray(r["eval_steps"], np.float64) / r["steps_per_epoch"]
        overrides = r["key"].get("overrides") or []
        row_name = f"N = {r['key']['num_simulations']}" + (f" ({', '.join(overrides)})" if overrides else "")
        curves = {"val_nll": r.get("val_curves_full", r["val_curves"]), **r["train_curves"]}
        for ax, (keys, title, yscale) in zip(axes[i], DUAL_PANELS):
            for c, k in enumerate(keys):
                for s, seed in enumerate(np.asarray([[np.nan if v is None else v for v in per_seed] for per_seed in curves.get(k, [])], np.float64)):
                    ax.plot(epochs[: len(seed)], seed, color=f"C{c}", lw=0.8, alpha=0.8, label=k if s == 0 and len(keys) > 1 else None)
            ax.set(xlabel="epoch", yscale=yscale)
            ax.set_title(f"{row_name}\n{title}", fontsize=9)
            if len(keys) > 1 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
