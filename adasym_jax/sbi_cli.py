"""The ``adasym sbi`` subcommand (registered by :mod:`adasym_jax.cli`): thin parsing around
:func:`adasym_jax.sbi.run.train_sbi` and :func:`adasym_jax.sbi.run.write_run`.

  adasym sbi --task two_moons --num-simulations 1000 --method adasym --seeds 5 --out runs/moons
  adasym sample --run runs/moons --context 0,0 --num 5000 --out post.npy

``--task`` is a built-in name or ``--pairs FILE`` (a ``.npz`` with ``beta`` and ``u``) for a
user's own simulations (then ``--observation`` and ``--reference FILE`` are needed for C2ST).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from adasym_jax.cli_args import add_overwrite_argument, add_set_argument, apply_overrides, parse_numbers, parse_seeds, refuse_existing
from adasym_jax.presets import SBI_RUN


def register(subparsers) -> None:
    """Add ``sbi`` to the ``adasym`` command's subparsers."""
    from adasym_jax.sbi.tasks import TASKS

    p = subparsers.add_parser("sbi", help="amortized posterior estimation (Section 5.4): train, C2ST at an observation")
    p.add_argument("--task", help=f"built-in task ({', '.join(TASKS)}) or module:attr naming an SBITask (or a function returning one)")
    p.add_argument("--pairs", help="instead of --task: .npz of simulations with arrays 'beta' (n, d) and 'u' (n, k)")
    p.add_argument("--reference", help="with --pairs: .npy of reference posterior samples at --observation")
    p.add_argument("--num-simulations", type=int, default=SBI_RUN["num_simulations"], help=f"simulation budget N (built-in tasks; default {SBI_RUN['num_simulations']})")
    p.add_argument("--method", choices=("adasym", "nf"), default="adasym", help="adasym (B.6 dual) or nf (NPE)")
    p.add_argument("--seeds", default="5", help="'5' = seeds 0-4; '2,7' = exactly those; trained at once (vmap; default 5)")
    p.add_argument("--out", required=True, help="output run folder")
    add_overwrite_argument(p, "replace the contents of a non-empty --out")
    p.add_argument("--observation", help="u0 as comma-separated numbers (default: D.4's u0 of the task)")
    p.add_argument("--steps", type=int, default=None, help=f"the step cap of a run to convergence (default {SBI_RUN['max_steps']}); with --fixed-steps the exact length (default {SBI_RUN['steps']})")
    p.add_argument("--fixed-steps", action="store_true", help="train exactly --steps steps (the paper's fixed-length runs) instead of to convergence")
    p.add_argument("--patience", type=int, default=SBI_RUN["patience"], help=f"training to convergence (sbi's NPE): stop a seed after this many evaluations without a lower validation NLL on the held-out 10 %% and keep its best parameters (default {SBI_RUN['patience']})")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (validation NLL, C2ST; default: one epoch but at least 100 steps, or 200 with --fixed-steps)")
    p.add_argument("--c2st-every", type=int, default=None, help="score C2ST at u₀ every this many evaluations (default: every one with --fixed-steps, every 10th when training to convergence; the final state is always scored)")
    p.add_argument("--zeta-per-condition", type=int, default=None, help="flow samples per condition for ζ(u_i) (default: the preset's, 4)")
    p.add_argument("--abc", action="store_true", help="reference samples by D.4's rejection ABC instead of the exact posterior")
    p.add_argument("--no-mlp-c2st", action="store_true", help="skip the SBI-benchmark (MLP, 5-fold) C2ST")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the simulations and reference samples")
    add_set_argument(p, "set", "TrainConfig overrides on top of D.4's preset (adasym_jax.presets.sbi), one or more per flag, repeatable (e.g. --set lr_flow=1e-3 ebm_blocks=3)")
    p.set_defaults(func=cmd_sbi)


def _import_task(spec: str):
    """``module:attr`` -> the user's :class:`SBITask` (``attr`` may be a zero-argument factory)."""
    import importlib

    from adasym_jax.sbi.tasks import SBITask

    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load task {spec!r}: {e}") from None
    task = obj() if callable(obj) and not isinstance(obj, SBITask) else obj
    if not isinstance(task, SBITask):
        raise ValueError(f"{spec!r} is not an SBITask (build one with adasym_jax.sbi.user_task)")
    return task


def cmd_sbi(args: argparse.Namespace) -> int:
    """Handler: validate everything, train, write ``metrics.json`` and the checkpoint."""
    if (args.task is None) == (args.pairs is None):
        raise ValueError("give exactly one of --task NAME or --pairs FILE")
    seeds = parse_seeds(args.seeds)  # the format of `adasym train --seeds`
    steps = args.steps if args.steps is not None else SBI_RUN["steps" if args.fixed_steps else "max_steps"]
    eval_every = args.eval_every if args.eval_every is not None else (SBI_RUN["eval_every"] if args.fixed_steps else None)
    patience = None if args.fixed_steps else args.patience
    c2st_every = args.c2st_every if args.c2st_every is not None else (1 if args.fixed_steps else 10)
    if c2st_every < 1:
        raise ValueError("--c2st-every must be >= 1")
    if steps < 1 or (eval_every is not None and eval_every < 1) or args.num_simulations < 2 or (patience is not None and patience < 1):
        raise ValueError("--steps, --eval-every, --patience must be >= 1 and --num-simulations >= 2")
    observation = parse_numbers(args.observation, "--observation")
    out = Path(args.out)
    refuse_existing(out, args.overwrite, present=out.is_dir() and any(out.iterdir()), state="already exists and is not empty")
    import jax.numpy as jnp

    from adasym_jax.presets import sbi as sbi_preset
    from adasym_jax.sbi.run import train_sbi, write_run
    from adasym_jax.sbi.tasks import SBITask, get_task, load_pairs, validate_observation, validate_task

    data = reference = None
    if args.task is not None:
        task = _import_task(args.task) if ":" in args.task else get_task(args.task)
        validate_task(task)
    else:
        beta, u = load_pairs(args.pairs)
        if observation is None or args.reference is None:
            raise ValueError("--pairs needs --observation and --reference (reference posterior samples) for C2ST")
        reference = np.load(args.reference)

        def _none(*_):
            raise ValueError("a task given by --pairs has no simulator")

        task = SBITask("pairs", beta.shape[1], u.shape[1], _none, _none, tuple(observation))
        data = (beta, u)
    if observation is not None:
        validate_observation(task, observation)
    config = sbi_preset(task, args.method).config
    config = apply_overrides(config, args.set)
    config = config.replace(method=args.method)
    if args.zeta_per_condition is not None:
        config = config.replace(zeta_per_condition=args.zeta_per_condition)
    from adasym_jax.runner import NonFiniteError

    try:
        result = train_sbi(
            task, args.num_simulations, args.method, seeds=seeds, steps=steps, eval_every=eval_every, patience=patience, c2st_every=c2st_every,
            observation=observation, reference="abc" if args.abc else "exact",
            data_seed=args.data_seed, mlp_c2st=not args.no_mlp_c2st, config=config, data=data,
            reference_draws=reference, progress=True,
        )
    except NonFiniteError as err:  # one line, no traceback (no run folder is written for a diverged SBI run)
        print(f"adasym: error: {err}", file=sys.stderr)
        return 3
    write_run(result, args.out)
    if patience is not None:
        stopped = result.settings["stopped_step"]
        print(f"early stopping (patience {patience} evaluations): seeds stopped at steps {', '.join(map(str, stopped))} (cap {steps}); the run keeps each seed's best-validation parameters")
    for proto, d in result.c2st.items():
        parts = [f"{which} {np.mean(v):.3f} ± {np.std(v):.3f}" for which, v in d.items() if which != "curve"]
        print(f"C2ST ({proto}): " + ", ".join(parts))
    u0 = ",".join(f"{v:g}" for v in np.asarray(jnp.asarray(result.observation)))
    print(f"wrote {args.out}/metrics.json and a checkpoint; sample with: adasym sample --run {args.out} --context {u0} --num 5000 --out post.npy")
    return 0
