"""Section 5.1 / Appendix D.1: the 40-component GMM (800 train / 10k test points).

Runs, every one through the library's runner, each group as one vmapped program:
  * dual (adasym), D.1 settings, ``--seeds`` seeds;
  * NF (maximum likelihood), ``--seeds`` seeds;
  * extra rows, the dual with one setting changed (:data:`EXTRA_DUALS`), ``--seeds`` seeds each:
    plain projected ascent on λ (``dual_sgd``), the pathwise θ gradient of the reverse KL
    (``dual_pathwise``) and an EBM with a decaying Gaussian base (``dual_base``);
  * P-W (eq. (P-W)) over the 25 pairs (w_fw, w_rv) ∈ {0.2, 0.5, 1, 2, 5}², w_prx = 1,
    ``--pw-seeds`` seeds per pair (the paper's Figure 2a shows one run per pair); ``--pw-pairs``
    trains a subset, and with ``--reuse`` a later command adds the pairs not yet in gmm40.json,
    so the grid can be filled over several commands;
  * WGAN-GP (critic LR 1e-5, GP 0.1) and the dual with ψ-LR 1e-5, each at θ/generator
    LR 1e-3 and 1e-5 (Figure 3b), ``--c4-seeds`` seeds.
Writes ``gmm40.md`` (tables + verdicts on C1–C4) and figures to ``--out``.

    python benchmarks/gmm40.py                # the scale that fits a 2-core CPU
    python benchmarks/gmm40.py --paper-scale  # D.1: 100k steps
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench2d import (  # noqa: E402
    EXTRA_DUALS, Curves, command_line, extra_line, git_commit, machine_line, notes_lines, oracle_nll, pm, provenance,
    provenance_lines, record_lines, train_members,
)

from adasym_jax.baselines import PW_WEIGHTS, GridMember, init_pw_grid, pw_grid_members  # noqa: E402
from adasym_jax import presets  # noqa: E402
from adasym_jax.config import TrainConfig  # noqa: E402
from adasym_jax.data import DATASETS, load_dataset  # noqa: E402
from adasym_jax.runner import Trainer  # noqa: E402

GROUPS = ("dual", "nf", *EXTRA_DUALS, "pw", "c4")

DEFAULT = {"steps": 150, "eval_every": 30, "eval_zeta": 2000}
PAPER = {"steps": presets.gmm40().run["steps"], "eval_every": 1000, "eval_zeta": 10_000}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, help=f"steps per run (default {DEFAULT['steps']}; paper {PAPER['steps']})")
    p.add_argument("--eval-every", type=int, help="steps between test evaluations")
    p.add_argument("--seeds", type=int, default=5, help="seeds of the dual and NF runs")
    p.add_argument("--pw-seeds", type=int, default=1, help="seeds per P-W weight pair")
    p.add_argument("--c4-seeds", type=int, default=2, help="seeds per WGAN / dual LR setting of C4")
    p.add_argument("--eval-zeta", type=int, help="flow samples for ζ̂ at evaluation (default 2000; paper scale 10000)")
    p.add_argument("--paper-scale", action="store_true", help="D.1's 100k steps")
    p.add_argument("--skip", default="", help=f"comma-separated groups to skip: {','.join(GROUPS)} (with --reuse, every group not in "
                   "gmm40.json trains unless skipped: the extra rows too)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--report-only", action="store_true", help="rewrite gmm40.md and the figures from gmm40.json (no training); the steps, seeds and ζ samples stated are read from the JSON, not from this command's flags")
    p.add_argument("--pw-pairs", default="all",
                   help="P-W pairs to train, 'all' or comma-separated w_fw:w_rv, e.g. 5:1,1:0.2 (each from 0.2, 0.5, 1, 2, 5); "
                        "with --reuse, pairs already in gmm40.json at the same steps are kept and only the others train")
    p.add_argument("--pw-steps", type=int, help="steps of the P-W grid (default --steps); C1/C2 then compare the dual at that step")
    p.add_argument("--c4-steps", type=int, help="steps of the C4 runs (default --steps)")
    p.add_argument("--reuse", action="store_true", help="keep the groups already in gmm40.json (same settings) and train only the others")
    p.add_argument("--work", default="runs/bench/gmm40", help="folder of each group's resumable checkpoint (saved every 5 min; a rerun with the same settings continues it; default runs/bench/gmm40)")
    a = p.parse_args(argv)
    scale = PAPER if a.paper_scale else DEFAULT
    a.steps = a.steps or scale["steps"]
    a.eval_every = a.eval_every or min(scale["eval_every"], a.steps)
    a.eval_zeta = a.eval_zeta or scale["eval_zeta"]
    a.pw_steps = a.pw_steps or a.steps
    a.c4_steps = a.c4_steps or a.steps
    try:
        a.pw_pairs = parse_pairs(a.pw_pairs)
    except ValueError as e:
        p.error(str(e))
    unknown = sorted(set(filter(None, a.skip.split(","))) - set(GROUPS))
    if unknown:
        p.error(f"--skip: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return a


def parse_pairs(text: str) -> list[tuple[float, float]]:
    """``'all'`` → the 25 pairs of D.1; else ``'w_fw:w_rv,...'`` in grid order, each weight from PW_WEIGHTS."""
    grid = [(a, b) for a in PW_WEIGHTS for b in PW_WEIGHTS]
    if text.strip() == "all":
        return grid
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            a, b = (float(v) for v in item.split(":"))
        except ValueError:
            raise ValueError(f"--pw-pairs: {item!r} is not w_fw:w_rv") from None
        if (a, b) not in grid:
            raise ValueError(f"--pw-pairs: ({a:g}, {b:g}) is not in the grid {{{', '.join(f'{w:g}' for w in PW_WEIGHTS)}}}²")
        pairs.append((a, b))
    if not pairs:
        raise ValueError("--pw-pairs: no pairs given")
    return [g for g in grid if g in pairs]


def _pair_tag(members) -> str:
    """A short name for a subset of the grid (its checkpoint folder), stable across commands."""
    import zlib

    key = ";".join(f"{g.seed}:{g.w_fw:g}:{g.w_rv:g}" for g in members)
    return f"pw_{len(members)}_{zlib.crc32(key.encode()):08x}"


def merge_members(old: Curves, old_members: list, new: Curves, new_members: list) -> tuple[Curves, list]:
    """The rows of two P-W groups of the same run settings as one group, in grid order. A group
    that stopped early (``fit`` stops once every member diverged) is padded with NaN."""
    steps = old.eval_steps if len(old.eval_steps) >= len(new.eval_steps) else new.eval_steps
    for c in (old, new):
        if not np.array_equal(c.eval_steps, steps[: len(c.eval_steps)]):
            raise ValueError("P-W groups evaluated at different steps cannot be merged")
    members = list(old_members) + list(new_members)
    order = sorted(range(len(members)), key=lambda i: (members[i].seed, PW_WEIGHTS.index(members[i].w_fw), PW_WEIGHTS.index(members[i].w_rv)))

    def pad(a, rows):
        a = np.full((rows, len(steps)), np.nan) if a is None else np.asarray(a, np.float64)
        return np.pad(a, ((0, 0), (0, len(steps) - a.shape[1])), constant_values=np.nan)

    def cat(a, b):
        return np.concatenate([pad(a, len(old_members)), pad(b, len(new_members))])[order]

    # the groups ran one after another: the merged rate is the one of running both
    sps = 1.0 / (1.0 / old.steps_per_second + 1.0 / new.steps_per_second)
    lambdas = {k: cat(old.lambdas.get(k), new.lambdas.get(k)) for k in {**old.lambdas, **new.lambdas}}
    merged = Curves("pw", steps, cat(old.test_nll_p, new.test_nll_p), cat(old.test_nll_q, new.test_nll_q),
                    cat(old.log_zeta, new.log_zeta), lambdas,
                    np.concatenate([old.diverged_at, new.diverged_at])[order], sps, old.compile_seconds + new.compile_seconds, None)
    return merged, [members[i] for i in order]


def run_group(config: TrainConfig, seeds: int, x, test, args, label: str, state=None, steps: Optional[int] = None) -> Curves:
    trainer = Trainer(config, 2)
    state = trainer.init(seeds) if state is None else state
    steps = steps or args.steps
    return train_members(trainer, state, x, test, steps, min(args.eval_every, steps), label, resume_dir=_work(args, label))


def _work(args, label: str) -> Optional[Path]:
    return None if not args.work else Path(args.work) / label.replace(" ", "_")


def truncated(c: Curves, step: int) -> Curves:
    """The curves of ``c`` up to evaluation step ``step``: training is deterministic, so these are
    exactly the curves of the same run stopped at ``step``."""
    keep = np.asarray(c.eval_steps) <= step
    div = np.where((c.diverged_at >= 0) & (c.diverged_at <= step), c.diverged_at, -1)
    return Curves(c.label, np.asarray(c.eval_steps)[keep], c.test_nll_p[:, keep], c.test_nll_q[:, keep], c.log_zeta[:, keep],
                  {n: v[:, keep] for n, v in c.lambdas.items()}, div, c.steps_per_second, c.compile_seconds, None)


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    skip = set(filter(None, args.skip.split(",")))
    x, test = load_dataset("gmm40")
    oracle = oracle_nll(DATASETS["gmm40"].log_prob, test)
    t_start = time.time()
    base = presets.gmm40().config.replace(eval_zeta_samples=args.eval_zeta)  # D.1
    path = out / "gmm40.json"
    if args.report_only and not path.is_file():
        print(f"error: {path} not found; --report-only rewrites a report from it", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    raw = json.loads(path.read_text()) if (args.reuse or args.report_only) and path.is_file() else {}
    runs: dict[str, Curves] = curves_from_json(raw)
    records = load_records(out) if runs else {}  # how each kept group was made (gmm40_runs.json)
    members: list = members_from_json(raw["pw"]) if "pw" in raw else []
    if args.report_only:
        settings_from_json(args, runs, raw, members)
        write_report(runs, members, oracle, args, float("nan"), out, records)
        plot(runs, members, oracle, out)
        return 0
    wanted = [g for g in pw_grid_members(args.pw_seeds, PW_WEIGHTS) if (g.w_fw, g.w_rv) in args.pw_pairs]
    missing = [g for g in wanted if g not in members]
    skip |= set(runs) | ({"c4"} if any(k.startswith("wgan_") for k in runs) else set())
    if missing and "pw" in runs and "pw" not in set(filter(None, args.skip.split(","))):
        stored, asked = raw["pw"].get("settings"), pw_settings(args)
        if stored != asked:
            print(f"error: gmm40.json's P-W pairs ran with {stored or 'unrecorded settings'}, this command asks for "
                  f"{asked}; new pairs can only join pairs run with the same settings", file=sys.stderr)
            return 2
        skip.discard("pw")  # add the requested pairs that gmm40.json does not hold yet

    def report(*names: str) -> None:
        # Written after every group, so an interrupted benchmark still leaves its results.
        for name in names:
            records[name] = provenance()
        write_report(runs, members, oracle, args, time.time() - t_start, out, records)
        plot(runs, members, oracle, out)
        save_raw(runs, out, members, pw_settings(args) if "pw" in runs else None)
        (out / "gmm40_runs.json").write_text(json.dumps(records, indent=2))

    if runs:
        print(f"reusing {sorted(runs)} from {out / 'gmm40.json'}", flush=True)
    elif (out / "gmm40_notes.md").is_file():
        print(f"warning: {out / 'gmm40_notes.md'} describes earlier results and is copied into the new report; "
              "edit or remove it once this run ends", file=sys.stderr)
    if "dual" not in skip:
        runs["dual"] = run_group(base, args.seeds, x, test, args, "dual")
        report("dual")
    if "nf" not in skip:
        runs["nf"] = run_group(base.replace(method="nf"), args.seeds, x, test, args, "nf")
        report("nf")
    for name, (change, _) in EXTRA_DUALS.items():  # docs/decisions.md §3 (Adam on λ), §9 (the base)
        if name not in skip:
            runs[name] = run_group(base.replace(**change), args.seeds, x, test, args, name)
            report(name)
    if "pw" not in skip:
        trainer = Trainer(base.replace(method="weighted"), 2)
        todo = missing if "pw" in runs else wanted
        label = "pw" if len(todo) == len(PW_WEIGHTS) ** 2 * args.pw_seeds else _pair_tag(todo)
        print(f"P-W: training {len(todo)} pair(s): {', '.join(f'({g.w_fw:g}, {g.w_rv:g})' for g in todo)}", flush=True)
        new = train_members(trainer, init_pw_grid(trainer, todo), x, test, args.pw_steps, min(args.eval_every, args.pw_steps), "pw", resume_dir=_work(args, label))
        if "pw" not in runs:  # a new P-W group: records of an earlier one no longer describe it
            records = {k: v for k, v in records.items() if not k.startswith("pw")}
        runs["pw"], members = merge_members(runs["pw"], members, new, todo) if "pw" in runs else (new, todo)
        report(pw_record_name(todo))
    if "c4" not in skip:
        for lr in (1e-3, 1e-5):
            cfg = base.replace(method="wgan", lr_flow=lr, lr_ebm=1e-5, gp_weight=0.1)
            runs[f"wgan_{lr:g}"] = run_group(cfg, args.c4_seeds, x, test, args, f"wgan lr {lr:g}", steps=args.c4_steps)
            runs[f"dual_{lr:g}"] = run_group(base.replace(lr_flow=lr, lr_ebm=1e-5), args.c4_seeds, x, test, args, f"dual lr {lr:g}", steps=args.c4_steps)
            report(f"wgan_{lr:g}", f"dual_{lr:g}")
    return 0


def pw_record_name(todo: list) -> str:
    """The name under which gmm40_runs.json records the command that trained the P-W members ``todo``."""
    pairs = sorted({(g.w_fw, g.w_rv) for g in todo}, key=lambda p: (PW_WEIGHTS.index(p[0]), PW_WEIGHTS.index(p[1])))
    return "pw " + ("all 25 pairs" if len(pairs) == len(PW_WEIGHTS) ** 2 else ",".join(f"{a:g}:{b:g}" for a, b in pairs))


def record_pairs(name: str) -> set:
    """The (w_fw, w_rv) pairs a ``pw …`` record name (:func:`pw_record_name`) covers."""
    body = name[len("pw "):]
    if body == "all 25 pairs":
        return {(a, b) for a in PW_WEIGHTS for b in PW_WEIGHTS}
    return {(float(a), float(b)) for a, b in (p.split(":") for p in body.split(","))}


def load_records(out: Path) -> dict:
    """Run name → provenance (command, commit, finish time, load average) from ``gmm40_runs.json``
    ({} if absent: results from before it was kept)."""
    path = out / "gmm40_runs.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def curves_from_json(raw: dict) -> dict[str, Curves]:
    """The groups' curves from gmm40.json's content."""
    arr = lambda v: np.asarray(v, np.float64)  # noqa: E731
    return {
        k: Curves(
            k,
            np.asarray(r["eval_steps"]),
            arr(r["test_nll_p"]),
            arr(r["test_nll_q"]),
            arr(r["log_zeta"]),
            {n: arr(v) for n, v in r["lambdas"].items()},
            np.asarray(r["diverged_at"]),
            r["steps_per_second"],
            r["compile_seconds"],
            None,
        )
        for k, r in raw.items()
    }


def _spacing(steps: np.ndarray) -> int:
    return int(steps[1] - steps[0]) if len(steps) > 1 else int(steps[0])


def settings_from_json(args, runs: dict, raw: dict, members: list) -> None:
    """``--report-only``: set the steps, evaluation spacing, ζ samples and seed counts in ``args``
    to those the stored groups ran with, so the report's scale line describes the runs and not
    the flags of the command that rewrites it. A group's length is its last evaluation; groups
    stop early only when all their members diverged, so the longest group of a kind is taken.
    What the JSON does not hold (ζ samples without a P-W group) keeps the flag's value, with a
    warning on stderr."""
    main_groups = [runs[k] for k in ("dual", "nf", *EXTRA_DUALS) if k in runs] or [c for k, c in runs.items() if k != "pw"]
    if main_groups:
        longest = max(main_groups, key=lambda c: int(c.eval_steps[-1]))
        args.steps = int(longest.eval_steps[-1])
        args.eval_every = _spacing(longest.eval_steps)
        args.seeds = int((runs.get("dual") or longest).test_nll_p.shape[0])
    c4 = [c for k, c in runs.items() if k.startswith("wgan_")]
    if c4:
        args.c4_steps = max(int(c.eval_steps[-1]) for c in c4)
        args.c4_seeds = int(c4[0].test_nll_p.shape[0])
    settings = (raw.get("pw") or {}).get("settings") or {}
    if settings:
        args.pw_steps = int(settings["steps"])
        args.eval_zeta = int(settings["eval_zeta"])
    else:
        print(f"warning: gmm40.json does not record the number of flow samples for ζ̂; the report says {args.eval_zeta} (--eval-zeta)", file=sys.stderr)
    if members:
        pairs = [(m.w_fw, m.w_rv) for m in members]
        args.pw_seeds = max(pairs.count(p) for p in set(pairs))


def pw_settings(args) -> dict:
    """What P-W pairs from different commands must share to be merged."""
    return {"steps": args.pw_steps, "eval_every": min(args.eval_every, args.pw_steps), "eval_zeta": args.eval_zeta}


def members_from_json(raw: dict) -> list:
    """The P-W members whose rows gmm40.json's ``pw`` entry holds (files from before ``--pw-pairs``:
    the full grid, ``rows / 25`` seeds per pair)."""
    if "members" not in raw:
        rows, pairs = len(raw["test_nll_p"]), len(PW_WEIGHTS) ** 2
        if rows % pairs:
            raise ValueError(f"gmm40.json holds {rows} P-W rows and no member list; expected a multiple of {pairs}")
        return pw_grid_members(rows // pairs, PW_WEIGHTS)
    return [GridMember(int(s), float(a), float(b), float(c)) for s, a, b, c in raw["members"]]


def save_raw(runs, out: Path, members: Optional[list] = None, settings: Optional[dict] = None) -> None:
    raw = {
        k: {
            "eval_steps": c.eval_steps.tolist(),
            "test_nll_p": c.test_nll_p.tolist(),
            "test_nll_q": c.test_nll_q.tolist(),
            "log_zeta": c.log_zeta.tolist(),
            "lambdas": {n: v.tolist() for n, v in c.lambdas.items()},
            "diverged_at": c.diverged_at.tolist(),
            "steps_per_second": c.steps_per_second,
            "compile_seconds": c.compile_seconds,
        }
        for k, c in runs.items()
    }
    if "pw" in raw and members:
        raw["pw"]["members"] = [[g.seed, g.w_fw, g.w_rv, g.w_prx] for g in members]
        raw["pw"]["settings"] = settings
    (out / "gmm40.json").write_text(json.dumps(raw, allow_nan=True))


# --------------------------------------------------------------------------------------
def _fluct(c: Curves) -> np.ndarray:
    """Steadiness: std of each member's test NLL over the second half of its evaluations."""
    half = c.test_nll_p[:, c.test_nll_p.shape[1] // 2 :]
    return np.nanstd(half, axis=1)


def _row(name: str, c: Curves) -> str:
    # NF never trains the EBM, so its q̃_ψ and ζ̂ columns would describe an untrained network.
    q = "–" if name == "nf" else pm(c.test_nll_q[:, -1])
    zeta = "–" if name == "nf" else pm(np.exp(c.log_zeta[:, -1]))
    return (
        f"| {name} | {c.test_nll_p.shape[0]} | {pm(c.best)} | {pm(c.last)} | {q} | "
        f"{zeta} | {c.steps_per_second:.2f} | {c.compile_seconds:.0f} |"
    )


def _previous_wall(path: Path) -> float:
    import re

    m = re.search(r"Wall time (?:so far )?([0-9.]+) min \(compiles included\)", path.read_text()) if path.is_file() else None
    return float(m.group(1)) * 60 if m else float("nan")


def write_report(runs, members, oracle, args, wall, out: Path, records: Optional[dict] = None) -> None:
    L = []
    L.append("# 40-component GMM (Section 5.1, Figures 2–3, Appendix D.1)\n")
    records = records or {}
    cmds = {(r.get("command"), r.get("commit")) for r in records.values()}
    unrecorded = [k for k in runs if k != "pw" and k not in records]
    if "pw" in runs:
        recorded_pairs = {pair for k in records if k.startswith("pw ") for pair in record_pairs(k)}
        missing_pairs = sorted({(g.w_fw, g.w_rv) for g in members} - recorded_pairs,
                               key=lambda q: (PW_WEIGHTS.index(q[0]), PW_WEIGHTS.index(q[1])))
        if missing_pairs:
            unrecorded.append("pw " + ",".join(f"{a:g}:{b:g}" for a, b in missing_pairs))
    several = len(cmds) > 1 or bool(cmds and unrecorded)
    if several:  # groups from several commands: each is listed under "How this file was made"
        L.append(f"The runs came from {len(cmds)} recorded command(s){' and earlier unrecorded ones' if unrecorded else ''}, listed "
                 f"with their commits, devices and load averages under \"How this file was made\" at the end. This file was last "
                 f"written by `{command_line()}` at commit `{git_commit()}`.  ")
        wall = float("nan")  # several commands: compile + training time of all the runs, below
    elif cmds:  # one command: the one recorded with the runs (a --report-only rewrite keeps it)
        L.extend(record_lines(list(records.values())[-1]))
    else:  # results from before gmm40_runs.json: only this command is known
        L.append(f"Command: `{command_line().replace(' --report-only', '')}` at commit `{git_commit()}`  ")
        L.append(machine_line())
    if not several and not np.isfinite(wall):  # keep the wall time an earlier full run wrote, if any
        wall = _previous_wall(out / "gmm40.md")
    if not np.isfinite(wall):  # report rebuilt from gmm40.json: compile + training time of the runs
        wall = sum(c.compile_seconds + c.eval_steps[-1] / c.steps_per_second for c in runs.values())
    L.append(
        f"Scale run: **{args.steps} full-batch steps per run** (the paper: 100,000), test evaluation every "
        f"{args.eval_every} steps on the 10,000 test points"
        + "".join(f"; **{k}: {int(c.eval_steps[-1])} steps**" for k, c in runs.items() if int(c.eval_steps[-1]) != args.steps)
        + f"; {args.seeds} seeds for dual and NF, {args.pw_seeds} "
        f"seed(s) per P-W pair, {args.c4_seeds} seeds per C4 setting. Models and learning rates as D.1 "
        f"(NSF 5 transforms × 8 bins, EBM 6 blocks × 64, M = 1000, LR θ 1e-3, ψ 1e-4, λ 1e-4, λ_ζ 1e-3, "
        f"ε_ζ 0.1, B.7 form, λ₀ = 0.01). Paper scale: add `--paper-scale`. "
        + (f"Compile + training time of all runs, added over their commands: {wall / 60:.1f} min.  " if several
           else f"Wall time {wall / 60:.1f} min (compiles included).  ")
    )
    paper_hours = sum(PAPER["steps"] / c.steps_per_second for c in runs.values()) / 3600
    if args.steps < PAPER["steps"]:
        L.append(
            f"Why this scale: at the speeds measured here (steps/s column) the paper's {PAPER['steps']:,} steps for these "
            f"runs would take ≈ {paper_hours:.0f} h of this CPU.  "
        )
    L.append(
        f"NLLs are nats per point on the test set; the true density's test NLL (oracle) is {oracle:.3f}. "
        "\"steadiness\" = std of a run's test NLL over the second half of its evaluations. ζ̂ is estimated "
        f"with {args.eval_zeta} flow samples at evaluation.\n"
    )
    L.append("## All runs\n")
    L.append("| run | members | best test NLL p_θ | last test NLL p_θ | last test NLL q̃_ψ | last ζ̂ | steps/s | compile s |")
    L.append("|---|---|---|---|---|---|---|---|")
    for k, c in runs.items():
        if k != "pw":
            L.append(_row(k, c))
    if "pw" in runs:
        L.append(_row(f"P-W ({len(members)} of {len(PW_WEIGHTS) ** 2 * len({g.seed for g in members})} members pooled)", runs["pw"]))
    L.append("")
    if "pw" in runs:
        pw = runs["pw"]
        L.append("## P-W weight pairs (w_prx = 1)\n")
        L.append("| w_fw | w_rv | best NLL p_θ | last NLL p_θ | steadiness | last ζ̂ | max ζ̂ | diverged at |")
        L.append("|---|---|---|---|---|---|---|---|")
        fl = _fluct(pw)
        for i, g in enumerate(members):
            z = np.exp(pw.log_zeta[i])
            L.append(
                f"| {g.w_fw:g} | {g.w_rv:g} | {pw.best[i]:.3f} | {pw.last[i]:.3f} | {fl[i]:.3f} | {z[-1]:.3g} | "
                f"{np.nanmax(z) if np.isfinite(z).any() else float('nan'):.3g} | {pw.diverged_at[i] if pw.diverged_at[i] >= 0 else '-'} |"
            )
        L.append("")
    L.append("## Verdicts\n")
    L.extend(verdicts(runs, members, args.steps))
    if several:
        L.append("\n## How this file was made\n")
        L.extend(provenance_lines(records))
        if unrecorded:
            L.append(f"- {', '.join(unrecorded)}: command not recorded (results from before gmm40_runs.json).")
    L.extend(notes_lines(out / "gmm40_notes.md"))
    (out / "gmm40.md").write_text("\n".join(L) + "\n")
    print("\n".join(L))


def verdicts(runs, members, steps: int) -> list[str]:
    V = []
    d = runs.get("dual")
    if d is not None and "pw" in runs:
        pw = runs["pw"]
        at = int(pw.eval_steps[-1])
        full_d = d
        if at < int(d.eval_steps[-1]):
            d = truncated(d, at)
            V.append(f"- C1 and C2 compare the dual at step {at}, the length of the P-W runs (the dual's own curve, cut there).")
        d_last, d_fl = np.nanmean(d.last), np.nanmean(_fluct(d))
        better_last = int(np.sum(d_last < pw.last))
        steadier = int(np.sum(d_fl <= _fluct(pw)))
        n = len(members)
        n_grid = len(PW_WEIGHTS) ** 2 * len({g.seed for g in members})
        best_pw = int(np.nanargmin(pw.last))
        holds = better_last == n and steadier == n
        word = ("holds" if holds else "does not hold") if n == n_grid or not holds else (
            f"holds on the {n} of {n_grid} members run so far (not decided until all are run)")
        V.append(
            f"- **C1 (dual p_θ ends lower and steadier than every P-W pair): {word} at this scale.** "
            f"Dual last test NLL {pm(d.last)} (steadiness {d_fl:.3f}); lower than {better_last}/{n} P-W members' last NLL and "
            f"at least as steady as {steadier}/{n}. Best P-W member: (w_fw, w_rv) = ({members[best_pw].w_fw:g}, "
            f"{members[best_pw].w_rv:g}) with last NLL {pw.last[best_pw]:.3f}."
        )
        z_d = np.exp(d.log_zeta)
        inside = np.mean((z_d >= 1.0) & (z_d <= 1.1))
        near = np.mean((z_d >= 0.9) & (z_d <= 1.2))
        z_pw = np.exp(pw.log_zeta)
        drift = np.nanmax(np.abs(pw.log_zeta), axis=1)
        n_drift = int(np.sum((drift > np.log(1.2)) | (pw.diverged_at >= 0)))
        holds2 = near == 1.0 and n_drift > 0
        word2 = "holds" if holds2 else "does not hold"
        if near == 1.0 and n_drift == 0 and n < n_grid:
            word2 = f"not decided: no drift among the {n} of {n_grid} P-W members run so far"
        V.append(
            f"- **C2 (dual ζ stays in [1, 1 + ε_ζ] = [1, 1.1], some P-W pairs drift): {word2} at this scale.** "
            f"Dual ζ̂ over all evaluations and seeds: range [{np.nanmin(z_d):.3f}, {np.nanmax(z_d):.3f}], "
            f"{100 * inside:.0f}% of evaluations inside [1, 1.1], {100 * near:.0f}% inside [0.9, 1.2]. "
            f"P-W: {n_drift}/{len(members)} members had ζ̂ outside [1/1.2, 1.2] at some evaluation (or diverged); "
            f"largest ζ̂ seen {np.nanmax(z_pw):.3g}, smallest {np.nanmin(z_pw):.3g}."
        )
        d = full_d
    for name in EXTRA_DUALS:
        if name in runs:
            V.append(extra_line(name, runs[name], runs.get("dual")))
    if d is not None and "nf" in runs:
        nf = runs["nf"]
        rise_nf, rise_d = nf.last - nf.best, d.last - d.best
        se_nf = max(np.nanstd(rise_nf), 1e-3) / np.sqrt(len(rise_nf))
        holds3 = np.nanmean(rise_nf) > 2 * se_nf and np.nanmean(rise_d) < 0.5 * np.nanmean(rise_nf)
        V.append(
            f"- **C3 (NF's test NLL rises as it overfits the 800 points; the dual's does not): {'holds' if holds3 else 'does not hold'} at this scale.** "
            f"Last − best test NLL: NF {pm(rise_nf)}, dual {pm(rise_d)}; NF best {pm(nf.best)} at step(s) "
            f"{sorted(set(int(nf.eval_steps[i]) for i in np.nanargmin(nf.test_nll_p, axis=1)))}, last {pm(nf.last)}; dual last {pm(d.last)}."
        )
    c4 = [k for k in ("wgan_0.001", "wgan_1e-05", "dual_0.001", "dual_1e-05") if k in runs]
    if c4:
        parts, broke = [], {}
        for k in c4:
            c = runs[k]
            div = int(np.sum(c.diverged_at >= 0))
            rise = c.last - c.best
            broke[k] = div > 0 or np.nanmean(rise) > 0.5 or not np.isfinite(c.last).all()
            parts.append(f"{k}: last {pm(c.last)}, best {pm(c.best)}, last − best {pm(rise)}, diverged {div}/{len(c.last)}")
        if len(c4) == 4:
            holds4 = broke["wgan_0.001"] and not broke["dual_0.001"] and not broke["dual_1e-05"]
            verdict = "holds" if holds4 else "does not hold"
        else:
            verdict = "not decided (runs incomplete)"
        V.append(
            f"- **C4 (WGAN-GP breaks at generator LR 1e-3; the dual holds at 1e-3 and 1e-5): {verdict} at this scale.** "
            "\"Breaks\" = a seed diverged (NaN/inf) or the mean test NLL ends > 0.5 nats above its best. " + "; ".join(parts) + "."
        )
    V.append(
        f"\nThese verdicts are for the scale stated above, {steps / PAPER['steps']:.0%} of the paper's {PAPER['steps']:,} steps; "
        "effects that need long training (overfitting, ζ drift) may not have had time to appear."
        if steps < PAPER["steps"] else "\nThese verdicts are at the paper's length of training."
    )
    return V


def plot(runs, members, oracle, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "pw" in runs and "dual" in runs:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        pw, d = runs["pw"], runs["dual"]
        for i in range(len(members)):
            ax[0].plot(pw.eval_steps, pw.test_nll_p[i], color="tab:gray", alpha=0.5, lw=0.8)
            ax[1].plot(pw.eval_steps, pw.log_zeta[i], color="tab:gray", alpha=0.5, lw=0.8)
        for row in d.test_nll_p:
            ax[0].plot(d.eval_steps, row, color="tab:red", lw=1.2)
        for row in d.log_zeta:
            ax[1].plot(d.eval_steps, row, color="tab:red", lw=1.2)
        ax[0].axhline(oracle, color="k", ls=":", lw=0.8, label="true density")
        both = np.concatenate([pw.test_nll_p.ravel(), d.test_nll_p.ravel()])
        both = both[np.isfinite(both)]
        if both.size:  # one spike should not flatten every curve: clip the axis at the 98th percentile
            top = float(np.percentile(both, 98))
            ax[0].set_ylim(min(oracle, float(both.min())) - 0.05, top + 0.25 * (top - min(oracle, float(both.min()))))
        ax[0].set(xlabel="step", ylabel="test NLL of p_θ", title=f"dual (red) vs {len(members)} P-W members (gray)")
        ax[0].legend()
        ax[1].axhspan(0.0, np.log(1.1), color="tab:green", alpha=0.15)
        ax[1].set(xlabel="step", ylabel="log ζ̂", title="log ζ̂ (band: [1, 1.1])")
        fig.tight_layout()
        fig.savefig(out / "gmm40_pw.png", dpi=90)
        plt.close(fig)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for k, color in (("dual", "tab:red"), ("nf", "tab:blue")):
        if k in runs:
            c = runs[k]
            for j, row in enumerate(c.test_nll_p):
                ax[0].plot(c.eval_steps, row, color=color, lw=1, label=k if j == 0 else None)
    ax[0].axhline(oracle, color="k", ls=":", lw=0.8, label="true density")
    ax[0].set(xlabel="step", ylabel="test NLL of p_θ", title="dual vs NF")
    ax[0].legend()
    for k, color, style in (
        ("wgan_0.001", "tab:orange", "--"),
        ("wgan_1e-05", "tab:brown", "--"),
        ("dual_0.001", "tab:red", "-"),
        ("dual_1e-05", "tab:purple", "-"),
    ):
        if k in runs:
            c = runs[k]
            for j, row in enumerate(c.test_nll_p):
                ax[1].plot(c.eval_steps, row, style, color=color, lw=1, label=k if j == 0 else None)
    ax[1].set(xlabel="step", ylabel="test NLL of p_θ", title="WGAN-GP (dashed) vs dual, ψ/critic LR 1e-5")
    if ax[1].get_legend_handles_labels()[0]:
        ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gmm40_nf_wgan.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
