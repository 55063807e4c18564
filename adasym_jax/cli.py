"""The ``adasym`` command: ``train``, ``evaluate``, ``sample`` and ``plot`` (thin wrappers
around library calls; parsing and printing only).

Extensions: for each module in :data:`EXTENSIONS` that can be imported, ``register(subparsers)``
is called at parser build time; it adds a subcommand whose parser sets ``func=handler`` with
``handler(args) -> int | None`` (via ``set_defaults``). A module that does not exist is
skipped; an error inside one that exists is not hidden. Handlers report bad input by raising
``ValueError`` (or ``OSError``): the command prints its first line to stderr and exits 1. A
malformed file that gets past the checks (``KeyError``, ``TypeError``, ...) is one line and exit
1 as well; ``ADASYM_DEBUG=1`` shows its traceback instead.

Commands that write outputs (``train``, ``evaluate``, ``sample``, ``plot``) refuse to replace an
existing one unless ``--overwrite`` is given (:func:`adasym_jax.cli_args.refuse_existing`).

Exit codes: 0 success, 1 bad input, 2 bad usage, 3 training diverged (last good checkpoint
saved), 130 interrupted (``train`` saves the last finished chunk and prints the command that
resumes it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from adasym_jax.cli_args import (
    add_overwrite_argument,
    add_set_argument,
    apply_overrides,
    join_negative_values,
    parse_numbers,
    parse_seeds,
    refuse_existing,
)

EXTENSIONS = ("adasym_jax.sbi_cli", "adasym_jax.latent_cli")
#: Files a run folder may contain; ``--overwrite`` removes exactly these.
RUN_FILES = ("config.json", "metrics.json", "checkpoint.json", "density.png", "curves.png", "data_preview.npy", "state*.msgpack")
# The README demo: the paper's D.1 method and model on moons; 1000 steps is where both p_θ and q̃_ψ
# show the two moons with log ζ̂ near its band (measured: benchmarks/results/demo.md).
from adasym_jax.presets import demo as _demo_preset  # noqa: E402  (the settings live in presets.demo)

DEMO = dict(_demo_preset().run)
DEFAULTS = {"method": "adasym", "seeds": "5", "steps": 1000, "eval_every": 100}
# `train --method nf` on user data (--data) trains to convergence by default, as sbi's NPE does:
# 10 % of the rows validate, a seed stops after 20 epochs without a lower validation NLL and
# keeps its best parameters; --steps is the cap. --fixed-steps restores the fixed-length run.
CONVERGENCE = {"validation_fraction": 0.1, "patience": 20}
PREVIEW_ROWS = 5000


EXIT_CODES = (
    "Errors are one line on stderr, 'adasym: error: ...'. Exit codes: 0 success; 1 bad input or a "
    "failure in the library (unreadable file, bad value, not a run folder); 2 bad usage (unknown or "
    "missing options, bad option values); 3 training diverged (the last good checkpoint is saved); "
    "130 interrupted (train saves the last finished chunk and prints the --resume command). "
    "ADASYM_DEBUG=1 prints the traceback of an unexpected error."
)


class UsageError(ValueError):
    """Bad command-line usage (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line
    ("adasym: error: ...", as for every other error); every parser's ``--help`` ends with
    :data:`EXIT_CODES`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", EXIT_CODES)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        command = self.prog[len("adasym"):].strip() if self.prog.startswith("adasym") else self.prog
        where = f"{command}: " if command else ""
        raise UsageError(f"adasym: error: {where}{message} (see `{self.prog} --help`)")


def _usage_line(err: Exception) -> str:
    """A :class:`UsageError`'s message as one 'adasym: error: ...' line."""
    import re

    msg = str(err).strip().splitlines()[0] if str(err).strip() else "bad usage"
    return "adasym: error: " + re.sub(r"^adasym(?: [\w-]+)*: error: ", "", msg)


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The full parser, including registered extension subcommands."""
    parser = _Parser(prog="adasym", description="Adaptive symmetrization of the KL divergence: train and use flow + EBM pairs.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a flow p_θ and EBM q_ψ for several seeds at once")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="built-in 2D set: gmm40, gmm_grid, gmm_ring, rings, spiral, moons (default with no data flag: a short moons demo)")
    src.add_argument("--data", help="training array, shape (n, dim): .npy, .npz[:key] (a 'test' array in it is the test set) or a numeric .csv/.tsv/.txt table (a header row is skipped)")
    t.add_argument("--test-data", help="test array of the same dim (default: the built-in test split, the 'test' array of a --data .npz, or a held-out part of --data)")
    t.add_argument("--test-fraction", type=float, default=0.1, help="with --data and no --test-data: fraction held out for testing (default 0.1; 0 tests on the training data)")
    from adasym_jax.config import METHODS  # light: no JAX import

    t.add_argument("--method", choices=METHODS, help="adasym (default), nf (maximum likelihood), weighted (P-W) or wgan")
    t.add_argument("--steps", type=int, help="total training steps, the cap when training to convergence (default 1000; demo 1000)")
    t.add_argument("--seeds", help="'5' = seeds 0-4; '2,7' = exactly those (default 5; demo 2)")
    t.add_argument("--out", required=True, help="run folder to create")
    t.add_argument("--eval-every", type=int, help="steps between test evaluations (default 100; demo 100; one epoch when training to convergence)")
    t.add_argument("--validation-fraction", type=float, help="fraction of the training rows held out to validate (exact NLL of p_θ) after each evaluation (default 0.1 when training to convergence, else 0)")
    t.add_argument("--patience", type=int, help="stop a seed after this many evaluations without a lower validation NLL and keep its best parameters (default 20 for --method nf on --data, else off: a fixed number of steps)")
    t.add_argument("--fixed-steps", action="store_true", help="train exactly --steps steps, no early stopping (the default except for --method nf on --data)")
    t.add_argument("--checkpoint-every", type=int, default=0, help="also save the checkpoint every K steps (rounded up to --eval-every; default: at the end, and on Ctrl-C the last finished chunk)")
    add_overwrite_argument(t, "replace an existing run in --out")
    t.add_argument("--resume", action="store_true", help="continue the run in --out up to --steps")
    add_set_argument(t, "overrides", "TrainConfig overrides, one or more per flag, repeatable (e.g. --set lr_flow=1e-4 ebm_blocks=3); with --resume only unroll_flow, which changes how the step compiles, not its numbers")
    t.add_argument("--standardize", choices=("auto", "on", "off"), default="auto", help="standardize data (auto: user data and spiral); statistics are saved with the run and NLLs reported in data units")
    t.add_argument("--data-seed", type=int, default=0, help="seed of the built-in data sets (default 0)")
    t.add_argument("--n-train", type=int, help="built-in sets: training points (default: the paper's)")
    t.add_argument("--n-test", type=int, help="built-in sets: test points (default 10000)")
    t.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="log-densities of p_θ and q̃_ψ on an array")
    e.add_argument("--run", required=True, help="run folder")
    e.add_argument("--data", required=True, help="array .npy/.npz[:key] of shape (n, dim)")
    e.add_argument("--out", required=True, help="output .npz with log_p, log_q (seeds × n) and log_zeta (seeds)")
    add_overwrite_argument(e, "replace an existing --out file")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", help="samples of p_θ, or of q_ψ by Langevin dynamics")
    s.add_argument("--run", required=True, help="run folder")
    s.add_argument("--num", type=int, required=True, help="samples per seed")
    s.add_argument("--out", required=True, help="output .npy of shape seeds × num × dim")
    add_overwrite_argument(s, "replace an existing --out file")
    s.add_argument("--model", choices=("p", "q"), default="p", help="p: the flow (default); q: Langevin on the EBM from flow samples")
    s.add_argument("--context", help="conditional runs: the condition u as comma-separated numbers")
    s.add_argument("--langevin-steps", type=int, default=2000, help="Langevin steps for --model q (D.4: 2000)")
    s.add_argument("--step-size", type=float, default=1e-4, help="Langevin step size (D.4: 1e-4)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed")
    s.set_defaults(func=cmd_sample)

    p = sub.add_parser("plot", help="density maps and training curves of a run as PNG")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--out", help="folder for the PNGs (default: the run folder)")
    add_overwrite_argument(p, "replace PNGs that already exist in --out (e.g. those `train` wrote into the run folder)")
    p.set_defaults(func=cmd_plot)

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        module.register(sub)
    return parser


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '?')} x{jax.device_count()}"


def _save_array(path: str, write) -> None:
    """Write through a temporary file in the target folder, renamed into place; the folder is
    created if needed (as ``train`` does) and the file's mode follows the umask."""
    import io

    from adasym_jax.files import atomic_write

    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{target} is a folder; give a file name")
    _make_folder(target.parent)
    buf = io.BytesIO()
    write(buf)
    atomic_write(target, buf.getvalue())


def _check_folder(folder: Path) -> None:
    """One clear line if ``folder`` or one of its parents exists and is a file."""
    for part in [folder, *folder.parents]:
        if part.exists() and not part.is_dir():
            raise ValueError(f"{part} exists and is not a folder")


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; one clear line if a part of it is a file."""
    _check_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)


def _check_output_file(path: str, overwrite: bool) -> None:
    """Before any work: ``path`` can be written by :func:`_save_array` (not a folder, no file
    among its parents) and, unless ``overwrite``, does not exist yet."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{target} is a folder; give a file name")
    _check_folder(target.parent)
    refuse_existing(target, overwrite)


def _clear_run(out: Path) -> None:
    for pattern in RUN_FILES:
        for f in out.glob(pattern):
            if f.is_file():
                f.unlink()
    best = out / BEST_DIR  # the best states of a run to convergence in progress
    if best.is_dir():
        shutil.rmtree(best)


# --------------------------------------------------------------------------------------
# reading run folders: every file checked before anything is built or compiled
# --------------------------------------------------------------------------------------
def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a one-line ``ValueError`` naming the file otherwise."""
    import json

    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{path}: unreadable ({type(e).__name__}{': ' + reason if reason else ''})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a JSON object")
    return obj


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_run_files(directory) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """``(metadata, config, settings)`` of a run folder: ``checkpoint.json``, its
    ``TrainConfig`` and the ``run`` part of ``config.json`` (``{}`` without one).

    Reads and checks every file :func:`adasym_jax.results.load_run` reads (the metadata's
    entries, the state file's size, checksum and arrays against the stored architecture, the
    standardization, ``config.json``) without compiling anything, so a damaged folder fails
    here, in one line naming the file, before any program is built."""
    from adasym_jax.checkpoint import CheckpointError, load_checkpoint, read_metadata, read_standardization
    from adasym_jax.config import TrainConfig
    from adasym_jax.results import CONFIG_FILE, META_FILE, RunError, is_run, load_run

    d = Path(directory)
    if not d.is_dir() or not is_run(d):
        load_run(d)  # raises RunError with the reason ("no such run folder", "not a run folder")
    meta_path = d / META_FILE
    try:
        meta = read_metadata(d)
    except CheckpointError as e:
        raise RunError(f"{d}: unreadable run ({str(e).splitlines()[0]})") from None
    dim, seeds = meta.get("dim"), meta.get("seeds")
    if not _is_int(dim) or dim < 1:
        raise RunError(f"{meta_path}: 'dim' must be an integer >= 1, got {str(dim)[:40]!r}")
    if not isinstance(seeds, list) or not seeds or not all(_is_int(v) and v >= 0 for v in seeds):
        raise RunError(f"{meta_path}: 'seeds' must be a non-empty list of integers >= 0, got {str(seeds)[:40]!r}")
    if "step" in meta and not _is_int(meta["step"]):
        raise RunError(f"{meta_path}: 'step' must be an integer, got {str(meta['step'])[:40]!r}")
    if meta.get("extra") is not None and not isinstance(meta["extra"], dict):
        raise RunError(f"{meta_path}: 'extra' must be a JSON object")
    try:
        config = TrainConfig.from_dict(meta["config"])
        load_checkpoint(d, config=config)  # shapes from jax.eval_shape: nothing is compiled
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, EOFError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"{d}: unreadable run ({reason})") from None
    try:
        read_standardization(meta)
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{d}: bad standardization record ({e})") from None
    settings: dict[str, Any] = {}
    if (d / CONFIG_FILE).is_file():
        settings = _read_json_object(d / CONFIG_FILE).get("run", {})
        if not isinstance(settings, dict):
            raise ValueError(f"{d / CONFIG_FILE}: 'run' is not a JSON object")
    return meta, config, settings


def _load_run(directory, checked: bool = False):
    """:func:`adasym_jax.results.load_run` after :func:`_check_run_files` (skipped when the
    caller has ``checked``); what still goes wrong in it is one ``RunError`` line."""
    from adasym_jax.results import RunError, load_run

    if not checked:
        _check_run_files(directory)
    try:
        return load_run(directory)
    except (KeyError, TypeError, AttributeError, IndexError, EOFError) as e:
        raise RunError(f"{Path(directory)}: unreadable run ({type(e).__name__}: {e})") from None


def _read_metrics(directory: Path) -> Optional[dict[str, Any]]:
    """``metrics.json`` of a run folder as a dict, ``None`` if there is none."""
    from adasym_jax.results import METRICS_FILE

    path = directory / METRICS_FILE
    return _read_json_object(path) if path.is_file() else None


def _table(value, where: str, rows: Optional[int] = None, cols: Optional[int] = None, flat_ok: bool = False) -> np.ndarray:
    """A JSON curve (seeds × evaluations, ``null`` = NaN; one flat list if ``flat_ok``) as a
    float64 array of that shape; one ``ValueError`` line naming ``where`` otherwise."""
    from adasym_jax.plotting import curve_rows

    table = isinstance(value, list) and all(isinstance(r, list) for r in value)
    try:
        if not (table or flat_ok and isinstance(value, list)):
            raise TypeError
        arr = curve_rows(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} is not a {'list' if flat_ok else 'seeds × evaluations table'} of numbers") from None
    if (rows is not None and arr.shape[0] != rows) or (cols is not None and arr.shape[1] != cols):
        want = f"{rows if rows is not None else 'seeds'} × {cols if cols is not None else 'evaluations'}"
        raise ValueError(f"{where} has shape {arr.shape[0]} × {arr.shape[1]}, expected {want}")
    return arr


def _entry(metrics: dict[str, Any], path: Path, *keys: str, kind: type = object):
    """``metrics[keys[0]][keys[1]]...``; one ``ValueError`` line naming ``path`` if it is missing
    or not a ``kind``."""
    value: Any = metrics
    for i, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{path} lacks the entry {'/'.join(keys[: i + 1])!r}")
        value = value[key]
    if not isinstance(value, kind):
        raise ValueError(f"{path}: the entry {'/'.join(keys)!r} is not a {kind.__name__}")
    return value


def _check_plot_metrics(metrics: dict[str, Any], path: Path, kind: str) -> None:
    """The curves that plotting a run of ``kind`` reads from ``metrics.json`` are there and are
    tables of numbers of matching lengths (checked before anything is compiled)."""
    if kind == "latent":
        n = len(_table(_entry(metrics, path, "eval_epochs", kind=list), f"{path}: eval_epochs", rows=1, flat_ok=True)[0])
        for key in _entry(metrics, path, "evals", kind=dict):
            _table(_entry(metrics, path, "evals", key, "curve", kind=list), f"{path}: evals/{key}/curve", cols=n, flat_ok=True)
        return
    n = len(_table(_entry(metrics, path, "eval_steps", kind=list), f"{path}: eval_steps", rows=1, flat_ok=True)[0])
    if kind == "sbi":
        _table(_entry(metrics, path, "c2st", "paper", "curve", kind=list), f"{path}: c2st/paper/curve", cols=n, flat_ok=True)
        curves = metrics.get("curves") or {}
        if not isinstance(curves, dict):
            raise ValueError(f"{path}: the entry 'curves' is not a dict")
        for key, value in curves.items():
            _table(value, f"{path}: curves/{key}", cols=n, flat_ok=True)
        return
    for key in ("test_nll_p", "test_nll_q", "log_zeta"):
        _table(_entry(metrics, path, key), f"{path}: {key}", cols=n)
    lambdas = metrics.get("lambdas") or {}
    if not isinstance(lambdas, dict):
        raise ValueError(f"{path}: the entry 'lambdas' is not a dict")
    for key, value in lambdas.items():
        _table(value, f"{path}: lambdas/{key}", cols=n)


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------
def _load_train_data(settings: dict[str, Any], report: bool = True):
    """(train, test, standardizer) in data coordinates from the run settings.

    The test set is ``--test-data``, else the built-in test split, else the ``test`` array of
    the training ``.npz`` (when it holds one), else a held-out ``test_fraction``; only when
    that leaves too few rows is it the training data itself (warned on stderr). With
    ``report``, one line on stdout says what was used (file, key, shape, test source);
    ``settings["test_source"]`` records it."""
    from adasym_jax.arrays import load_array_with_source
    from adasym_jax.checkpoint import Standardization
    from adasym_jax.data import load_dataset

    test, source, warning = None, None, None
    if settings.get("dataset"):
        train, test = load_dataset(settings["dataset"], settings.get("n_train"), settings.get("n_test"), settings.get("data_seed", 0))
        train_text = f"built-in {settings['dataset']} (data seed {settings.get('data_seed', 0)})"
        test_text = "the built-in test split"
    elif settings.get("data"):
        train, source = load_array_with_source(settings["data"], "training data")
        train_text = str(source) + (" (header row skipped)" if source.header else "")
    else:
        raise ValueError("the run's config.json names no data source (dataset or data)")
    if settings.get("test_data"):
        test, tsrc = load_array_with_source(settings["test_data"], "test data", dim=train.shape[1], min_rows=1)
        test_text = f"--test-data {tsrc}"
    elif test is None and source is not None and source.key not in (None, "test") and "test" in source.names:
        test, _ = load_array_with_source(f"{source.path}:test", "test data", dim=train.shape[1], min_rows=1)
        test_text = f"the file's 'test' array ({source.path}:test; --test-fraction not used)"
    elif test is None:
        fraction = float(settings.get("test_fraction", 0.1))
        n_test = int(round(fraction * len(train)))
        if n_test >= 1 and len(train) - n_test >= 2:
            perm = np.random.default_rng(settings.get("data_seed", 0)).permutation(len(train))
            train, test = train[perm[n_test:]], train[perm[:n_test]]
            test_text = f"{n_test} rows held out from the data (--test-fraction {fraction:g})"
        else:
            test = train
            why = "--test-fraction 0" if fraction == 0 else f"{len(train)} rows are too few to hold out {fraction:g} of them"
            test_text = "the training data itself"
            warning = f"adasym: warning: the test set is the training set ({why}); test NLLs measure the fit, not generalization (pass --test-data)"
    settings["test_source"] = test_text
    if report:
        print(f"data: {train_text}, {train.shape[0]} x {train.shape[1]}; test: {test_text}, {test.shape[0]} rows", flush=True)
        if warning:
            print(warning, file=sys.stderr, flush=True)
    std = settings.get("standardization")
    standardizer = None if std is None else Standardization.from_dict(std)
    return train, test, standardizer


def _new_settings(args):
    """Settings of a new run from the arguments, plus ``(train, test, standardizer)``."""
    from adasym_jax.checkpoint import Standardization
    from adasym_jax.data import dataset_spec

    demo = args.dataset is None and args.data is None
    base = DEMO if demo else DEFAULTS
    settings: dict[str, Any] = {
        "dataset": args.dataset or (DEMO["dataset"] if demo else None),
        "data": os.path.abspath(args.data) if args.data else None,
        "test_data": os.path.abspath(args.test_data) if args.test_data else None,
        "test_fraction": args.test_fraction,
        "data_seed": args.data_seed,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "method": args.method or base["method"],
        "seeds": parse_seeds(args.seeds or base["seeds"]),
        "steps": args.steps if args.steps is not None else base["steps"],
        "eval_every": args.eval_every if args.eval_every is not None else base["eval_every"],
        "demo": demo,
    }
    from adasym_jax.runner import check_early_stopping, validation_split

    if args.fixed_steps and args.patience is not None:
        raise UsageError("adasym train: error: --fixed-steps and --patience exclude each other")
    converge = settings["method"] == "nf" and settings["data"] is not None and not args.fixed_steps
    patience = args.patience if args.patience is not None else (CONVERGENCE["patience"] if converge else None)
    fraction = args.validation_fraction
    if fraction is None:
        fraction = CONVERGENCE["validation_fraction"] if patience is not None else 0.0
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--validation-fraction must be in [0, 1), got {fraction}")
    if patience is not None and patience < 1:
        raise ValueError(f"--patience must be >= 1, got {patience}")
    if patience is not None and fraction == 0.0:
        raise ValueError("--patience needs a validation split: --validation-fraction must be > 0 (e.g. 0.1)")
    check_early_stopping(fraction, patience)
    settings["validation_fraction"], settings["patience"] = float(fraction), patience
    if patience is not None and args.eval_every is None:
        settings["eval_every"] = None  # one epoch, resolved once the config is known (cmd_train)
    if settings["dataset"]:
        dataset_spec(settings["dataset"])  # unknown names fail here
    if not 0.0 <= args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    train, test, _ = _load_train_data(settings)
    try:
        fit_rows = validation_split(len(train), fraction)[0]  # fit holds out the same rows to validate
    except ValueError as err:
        raise ValueError(str(err).replace("validation_fraction=", "--validation-fraction ", 1)) from None
    standardize = args.standardize == "on" or (
        args.standardize == "auto" and (settings["data"] is not None or settings["dataset"] == "spiral")
    )
    standardizer = Standardization.fit(train[fit_rows]) if standardize else None
    settings["standardization"] = None if standardizer is None else standardizer.to_dict()
    return settings, train, test, standardizer


def _to_model(standardizer, x: np.ndarray) -> np.ndarray:
    return x if standardizer is None else np.asarray(standardizer.apply(x), np.float32)


def _build_config(method: str, overrides: Sequence[str]):
    from adasym_jax.config import METHODS, TrainConfig

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    config = TrainConfig(method=method)
    config = apply_overrides(config, overrides)
    if config.method != method:
        raise ValueError("set the method with --method, not --set method=...")
    if config.context_dim:
        raise ValueError("adasym train fits unconditional models; context_dim must be 0 (see `adasym sbi`)")
    return config


#: Types of the run settings (``config.json``'s ``run`` part) that ``train --resume`` uses;
#: ``None`` in a tuple: the entry may be null. ``steps`` and ``eval_every`` must be there.
_RESUME_SETTINGS: dict[str, tuple] = {
    "steps": (int,), "eval_every": (int,), "method": (str,), "validation_fraction": (int, float, None),
    "patience": (int, None), "test_fraction": (int, float), "data_seed": (int,), "n_train": (int, None),
    "n_test": (int, None), "dataset": (str, None), "data": (str, None), "test_data": (str, None),
    "standardization": (dict, None), "command": (str, None), "resumed_commands": (list, None), "converged": (bool, None),
}  # fmt: skip
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list", bool: "true or false", None: "null"}


def _check_resume_settings(settings: dict[str, Any], path: Path) -> None:
    """One ``ValueError`` line naming ``path`` if a setting that resuming uses is missing or of
    the wrong type (checked before anything is compiled)."""
    for key, types in _RESUME_SETTINGS.items():
        if key not in settings:
            if key in ("steps", "eval_every"):
                raise ValueError(f"{path} lacks the run setting {key!r}; cannot resume")
            continue
        v = settings[key]
        ok = (v is None and None in types) or any(
            t is not None and isinstance(v, t) and (t is bool or not isinstance(v, bool)) for t in types
        )
        if not ok:
            names = " or ".join(_TYPE_NAMES[t] for t in types if not (t is int and float in types))
            raise ValueError(f"{path}: the run setting {key!r} must be {names}, got {str(v)[:40]!r}")
    for key in ("steps", "eval_every"):
        if settings[key] < 1:
            raise ValueError(f"{path}: the run setting {key!r} must be >= 1, got {settings[key]}")


def _check_previous_metrics(previous: dict[str, Any], path: Path, num_seeds: int) -> None:
    """The curves of an earlier ``metrics.json`` that a resumed run continues are there, with a
    row per seed (checked before training, which would otherwise fail at its end)."""
    n = len(_table(_entry(previous, path, "eval_steps", kind=list), f"{path}: eval_steps", rows=1, flat_ok=True)[0])
    for key in ("test_nll_p", "test_nll_q", "log_zeta"):
        _table(_entry(previous, path, key), f"{path}: {key}", rows=num_seeds, cols=n)
    for group in ("lambdas", "train"):
        entries = previous.get(group, {})
        if not isinstance(entries, dict):
            raise ValueError(f"{path}: the entry {group!r} is not a dict")
        for key, value in entries.items():
            _table(value, f"{path}: {group}/{key}", rows=num_seeds)


def _check_resume_overrides(overrides: Sequence[str], out: Path) -> None:
    """``train --resume`` takes the run's config from ``out``; ``--set`` may change only the
    settings of :data:`adasym_jax.config.TRACE_ONLY_FIELDS`, which leave the numbers as they are.
    One ``ValueError`` line otherwise, before anything is loaded or compiled."""
    from adasym_jax.config import TRACE_ONLY_FIELDS, TrainConfig

    for text in overrides:
        apply_overrides(TrainConfig(), [text])  # an unknown key or a bad value: the usual one line
        key = text.split("=", 1)[0].strip()
        if key not in TRACE_ONLY_FIELDS:
            raise ValueError(
                f"--resume takes the config from {out}; --set {text} would change the run "
                f"(only {', '.join(TRACE_ONLY_FIELDS)} may be set on --resume)"
            )


def cmd_train(args) -> int:
    from adasym_jax.checkpoint import save_checkpoint
    from adasym_jax.results import CONFIG_FILE, METRICS_FILE, is_run, metrics_from_fit, write_json
    from adasym_jax.runner import FitInterrupted, NonFiniteError, Trainer, fit, steps_per_epoch, validation_split

    out = Path(args.out)
    for name in ("steps", "eval_every"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.checkpoint_every < 0:
        raise ValueError("--checkpoint-every must be >= 0")
    if args.resume and args.overwrite:
        raise UsageError("adasym train: error: --resume and --overwrite exclude each other")

    previous = None
    if args.resume:
        given = [
            f for f in ("dataset", "data", "test_data", "method", "seeds", "validation_fraction", "patience")
            if getattr(args, f) is not None
        ] + (["fixed_steps"] if args.fixed_steps else [])
        if given:
            raise ValueError(f"--resume takes data, method, seeds and config from {out}; drop --{given[0].replace('_', '-')}")
        _check_resume_overrides(args.overrides, out)
        # Every file of the run is read and checked before anything is compiled.
        meta, stored_config, settings = _check_run_files(out)
        settings = dict(settings)
        if not settings:
            raise ValueError(f"{out}: {CONFIG_FILE} is missing or has no run settings; cannot resume")
        if args.steps is not None:
            settings["steps"] = args.steps
        if args.eval_every is not None:
            settings["eval_every"] = args.eval_every
        settings.setdefault("method", stored_config.method)
        _check_resume_settings(settings, out / CONFIG_FILE)
        previous = _read_metrics(out)
        if previous is not None:
            _check_previous_metrics(previous, out / METRICS_FILE, len(meta["seeds"]))
        train, test, standardizer = _load_train_data(settings)
        if train.shape[1] != meta["dim"]:
            raise ValueError(f"{out}: the run's data now has dim {train.shape[1]}, the checkpoint {meta['dim']}")
        run = _load_run(out, checked=True)
        config, state, seeds, trainer = run.config, run.state, run.seeds, run.trainer
        if args.overrides:  # trace-only settings: same parameters and numbers, another compiled step
            config = apply_overrides(config, args.overrides)
            if config != run.config:
                trainer = Trainer(config, int(meta["dim"]))
        done = int(np.asarray(state.step).reshape(-1)[0])
        early = _saved_early_stopping(out, meta, state, settings)
        remaining = settings["steps"] - done
        if settings.get("converged"):
            print(f"{out} stopped early at step {done}: every seed's validation NLL stopped improving; nothing to resume")
            return 0
        if remaining <= 0:
            print(f"{out} is already at step {done} (target {settings['steps']}); pass a larger --steps to continue")
            return 0
    else:
        settings, train, test, standardizer = _new_settings(args)
        config = _build_config(settings["method"], args.overrides)
        seeds = settings["seeds"]
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out} exists and is not a folder")
        refuse_existing(
            out, args.overwrite, present=out.is_dir() and any(out.iterdir()), state="already exists and is not empty",
            hint=" or --resume to continue it" if is_run(out) else "",
        )
        if out.is_dir() and args.overwrite and any(out.iterdir()) and not is_run(out):
            leftover = [p.name for p in out.iterdir()]
            raise ValueError(f"{out} is not a run folder ({', '.join(leftover[:3])} ...); refusing to overwrite it")
        trainer = Trainer(config, train.shape[1])
        state = trainer.init(seeds)
        early = None
        done, remaining = 0, settings["steps"]
        if settings["eval_every"] is None:  # training to convergence: evaluate once per epoch
            n_fit = len(validation_split(len(train), settings["validation_fraction"])[0])
            settings["eval_every"] = steps_per_epoch(config, n_fit)
    command = "adasym " + shlex.join(getattr(args, "argv", ["train"]))
    if args.resume and settings.get("command"):
        # the command that started the run stays; each resume is appended
        settings["resumed_commands"] = [*(settings.get("resumed_commands") or []), command]
    else:
        settings["command"] = command
    settings["device"] = _device()
    settings["dim"] = int(train.shape[1])
    x, x_test = _to_model(standardizer, train), _to_model(standardizer, test)

    created = not out.exists()
    first_save = [not args.resume]
    saved_step = [done if args.resume else None]  # the step of the checkpoint on disk

    def save(state_, metrics_=None, early_=None) -> None:
        if first_save[0]:
            # Only now touch the folder: replace an old run, keep a data preview for `plot`.
            first_save[0] = False
            if args.overwrite and out.is_dir():
                _clear_run(out)
            out.mkdir(parents=True, exist_ok=True)
            preview = train[np.random.default_rng(0).permutation(len(train))[:PREVIEW_ROWS]]
            _save_array(str(out / "data_preview.npy"), lambda f: np.save(f, preview))
        # A run to convergence in progress keeps its validation bookkeeping (in the checkpoint's
        # extra) and each seed's best state (BEST_DIR), so --resume goes on with both.
        # best/ is written first and tagged with the step it goes with; the main checkpoint is the
        # commit point, and a best/ of another step is refused on --resume (an interrupted save).
        best = out / BEST_DIR
        step_ = _step_of(state_)
        if early_ is not None:
            save_checkpoint(best, early_.best_state, config, train.shape[1], seeds, extra={"for_step": step_}, standardization=standardizer)
        extra = None if early_ is None else {"early_stopping": {**early_.to_dict(), "step": step_}}
        save_checkpoint(out, state_, config, train.shape[1], seeds, extra=extra, standardization=standardizer)
        if early_ is None and best.is_dir():
            shutil.rmtree(best)
        write_json(out / CONFIG_FILE, {"config": config.to_dict(), "run": settings})
        if metrics_ is not None:
            write_json(out / METRICS_FILE, metrics_)
        saved_step[0] = _step_of(state_)

    def metrics_of(part):
        part.seeds = list(seeds)
        return metrics_from_fit(part, standardizer, previous)

    eval_every, target = settings["eval_every"], settings["steps"]
    every = 0 if args.checkpoint_every == 0 else max(eval_every, -(-args.checkpoint_every // eval_every) * eval_every)
    # One bar over the whole run (a resumed run's starts at its step); test NLL in data units.
    shift = 0.0 if standardizer is None else standardizer.log_det
    bars = []  # made at the first evaluation, so that compiling does not count in its rate
    latest = [None]  # FitResult of the last finished chunk

    def on_eval(part) -> None:
        latest[0] = part
        step = _step_of(part.state)
        if not args.quiet and not bars:
            bars.append(_progress(target, True, settings["method"], initial=done))
        bar = bars[0] if bars else None
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix(test_nll_p=f"{np.mean(part.evals['test_nll_p'][:, -1]) + shift:.3f}")
        if every and step < target and step - (done if saved_step[0] is None else saved_step[0]) >= every:
            save(part.state, metrics_of(part), part.early_stopping)

    try:
        result = fit(
            x,
            config=config,
            seeds=len(seeds),
            num_steps=remaining,
            eval_every=eval_every,
            test_data=x_test,
            state=state,
            progress=False,
            trainer=trainer,
            on_eval=on_eval,
            standardize=False,  # the command standardizes itself (--standardize) and saves the statistics
            validation_fraction=settings.get("validation_fraction", 0.0),
            patience=settings.get("patience"),
            early_stopping=early,
        )
        latest[0] = result
        if result.stopped_step is not None:
            settings["converged"] = _step_of(result.state) < settings["steps"]  # every seed stopped before the cap
        metrics = metrics_of(result)
        save(result.state, metrics)
    except NonFiniteError as err:
        metrics = previous if latest[0] is None else metrics_of(latest[0])
        _close_bars(bars)
        # the last good state goes with the bookkeeping of the same chunk (a run to convergence)
        save(err.last_good_state, metrics, latest[0].early_stopping if latest[0] is not None else early)
        good = _step_of(err.last_good_state)
        print(f"adasym: error: {err} (saved the step-{good} checkpoint to {out})", file=sys.stderr)
        return 3
    except KeyboardInterrupt as err:
        part = err.result if isinstance(err, FitInterrupted) and err.result is not None else latest[0]
        _close_bars(bars)
        return _save_interrupted(args, out, target, part, saved_step[0], save, metrics_of, created)
    except BaseException:
        if created and not args.resume and out.is_dir() and not is_run(out):
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        for bar in bars:
            bar.close()

    if not args.no_plots:
        from adasym_jax.plotting import plot_run
        from adasym_jax.results import load_run as _load

        plot_run(_load(out), train[:PREVIEW_ROWS], metrics, out)
    if "stopping_step" in metrics:
        print(
            f"early stopping (patience {settings['patience']} evaluations): seeds stopped at steps "
            f"{', '.join(str(int(v)) for v in metrics['stopping_step'])} (cap {target}); each keeps its best "
            f"parameters: validation NLL {np.nanmean(metrics['best_val_nll']):.4f}, test NLL of p_θ "
            f"{np.nanmean(metrics['restored_test_nll_p']):.4f} on average (data units)"
        )
    _print_summary(metrics, out)
    line = zeta_band_line(metrics, config)
    if line:
        print(line, file=sys.stderr)
    return 0


def _close_bars(bars) -> None:
    """Close the progress bars before a final message. On a terminal tqdm clears its line; into
    a pipe or file the bar's last ``\r``-rendered line has no newline, so end it here, or the
    message would continue that line."""
    for bar in bars:
        bar.close()
    if bars and not sys.stderr.isatty():
        print(file=sys.stderr)


def _step_of(state) -> int:
    return int(np.asarray(state.step).reshape(-1)[0])


def _progress(total: int, enabled: bool, desc: str, initial: int = 0):
    from adasym_jax.runner import _progress as bar

    return bar(total, enabled, desc, initial)


def resume_command(out: str, steps: int) -> str:
    """The exact command that continues the run in ``out`` up to ``steps``."""
    return "adasym " + shlex.join(["train", "--out", str(out), "--resume", "--steps", str(steps)])


#: The subfolder of a run to convergence in progress that holds each seed's best state.
BEST_DIR = "best"


def _saved_early_stopping(out: Path, meta: dict, state, settings: dict):
    """The :class:`~adasym_jax.runner.EarlyStopping` an interrupted run to convergence saved
    (its bookkeeping in the checkpoint's extra, the best states in ``BEST_DIR``), or ``None``."""
    from adasym_jax.checkpoint import CheckpointError, is_checkpoint, load_checkpoint
    from adasym_jax.runner import EarlyStopping

    saved = (meta.get("extra") or {}).get("early_stopping")
    if settings.get("patience") is None or saved is None:
        return None
    best = out / BEST_DIR
    if not is_checkpoint(best):
        raise ValueError(f"{out}: the run's validation bookkeeping is saved but {best} is missing; cannot resume the run to convergence")
    try:
        best_state, best_meta = load_checkpoint(best, template=state)
        early = EarlyStopping.from_dict(saved, best_state)
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{best}: cannot read the best states of the run to convergence ({e})") from None
    for_step = (best_meta.get("extra") or {}).get("for_step")
    if for_step != saved.get("step"):
        raise ValueError(
            f"{best} holds the best states of step {for_step}, the checkpoint is of step {saved.get('step')} "
            "(a save was interrupted); cannot resume the run to convergence exactly"
        )
    return early


def _save_interrupted(args, out: Path, target: int, part, on_disk: Optional[int], save, metrics_of, created: bool) -> int:
    """Ctrl-C in ``train``: save ``part`` (the FitResult of the last finished chunk) unless
    the checkpoint on disk (at step ``on_disk``, ``None`` if nothing was saved) is as recent;
    one line on stderr says which step is saved and how to continue. Exit code 130."""
    step = None if part is None else _step_of(part.state)
    if step is not None and step != on_disk:
        save(part.state, metrics_of(part), part.early_stopping)
        on_disk = step
    if on_disk is None:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        print("adasym: interrupted before the first chunk finished; nothing was saved", file=sys.stderr)
        return 130
    print(
        f"adasym: interrupted; saved step {on_disk} of {target} in {out}; continue with: {resume_command(args.out, target)}",
        file=sys.stderr,
    )
    return 130


#: log ζ̂ may miss its band by this much (nats) before the end-of-run line reports it (ζ̂ is
#: an estimate from ``eval_zeta_samples`` flow samples).
ZETA_BAND_TOL = 0.01


def zeta_band(eps_zeta: float) -> tuple[float, float]:
    """The band [0, log(1 + ε_ζ)] that the constraints 1 ≤ ζ ≤ 1 + ε_ζ ask of log ζ."""
    return 0.0, float(np.log1p(eps_zeta))


def zeta_band_line(metrics: dict[str, Any], config, tol: float = ZETA_BAND_TOL) -> Optional[str]:
    """One warning line when the last log ζ̂ of some seed lies outside its band by more than
    ``tol`` (adasym runs, whose constraints ask for the band); ``None`` otherwise."""
    from adasym_jax.plotting import curve_rows

    curve = metrics.get("log_zeta")
    if config.method != "adasym" or curve is None or len(curve) == 0:
        return None
    last = curve_rows(curve if isinstance(curve, list) else np.asarray(curve).tolist())[:, -1]
    lo, hi = zeta_band(config.eps_zeta)
    bad = ~np.isfinite(last) | (last < lo - tol) | (last > hi + tol)
    if not bad.any():
        return None
    seeds = [s for s, b in zip(metrics["seeds"], bad) if b]
    values = ", ".join(f"{v:.3f}" for v in last[bad])
    return (
        f"adasym: warning: log ζ̂ ended outside its band [{lo:g}, {hi:.4f}] = [0, log(1 + ε_ζ)] for seed(s) "
        f"{', '.join(map(str, seeds))} (log ζ̂ = {values}): exp(f_ψ/T) is not normalized as 1 ≤ ζ ≤ 1 + ε_ζ asks "
        f"(q̃_ψ divides by ζ̂); train longer or see docs/decisions.md §3 and benchmarks/results/zeta_diagnosis.md"
    )


def _print_summary(metrics: dict[str, Any], out: Path) -> None:
    best = np.asarray(metrics["best_test_nll_p"], np.float64)
    last = np.asarray(metrics["last_test_nll_p"], np.float64)
    print(
        f"{metrics['method']}: {len(metrics['seeds'])} seeds, step {metrics['final_step']}, "
        f"{metrics['steps_per_second']:.2f} steps/s (compile {metrics['compile_seconds']:.1f} s)"
    )
    print(
        f"test NLL of p_θ (nats per point, data units): best {np.nanmean(best):.4f} ± {np.nanstd(best):.4f}, "
        f"last {np.nanmean(last):.4f} ± {np.nanstd(last):.4f}"
    )
    print(f"wrote {out}")


# --------------------------------------------------------------------------------------
# evaluate, sample, plot
# --------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from adasym_jax.arrays import load_array
    from adasym_jax.results import evaluate_run

    out = args.out if args.out.endswith(".npz") else args.out + ".npz"
    _check_output_file(out, args.overwrite)
    meta, _, _ = _check_run_files(args.run)
    x = load_array(args.data, "data", dim=meta["dim"], min_rows=1)
    run = _load_run(args.run, checked=True)
    ev = evaluate_run(run, x)
    _save_array(out, lambda f: np.savez(f, **ev))
    nll_p, nll_q = -ev["log_p"].mean(axis=1), -ev["log_q"].mean(axis=1)
    for s, a, b, z in zip(run.seeds, nll_p, nll_q, ev["log_zeta"]):
        print(f"seed {s}: NLL p_θ {a:.4f}  NLL q̃_ψ {b:.4f}  log ζ̂ {z:.4f}")
    print(f"mean over {len(run.seeds)} seeds: NLL p_θ {nll_p.mean():.4f}  NLL q̃_ψ {nll_q.mean():.4f}")
    return 0


def cmd_sample(args) -> int:
    import jax

    from adasym_jax.results import sample_run

    _check_output_file(args.out, args.overwrite)
    context = parse_numbers(args.context, "--context")
    run = _load_run(args.run)
    samples = sample_run(
        run, args.num, jax.random.PRNGKey(args.seed), args.model, context, args.langevin_steps, args.step_size
    )
    if not np.all(np.isfinite(samples)):
        raise ValueError("sampling produced NaN or infinite values (try a smaller --step-size)")
    _save_array(args.out, lambda f: np.save(f, samples))
    print(f"wrote {args.out}: shape {samples.shape}")
    if run_kind(run) == "latent":
        space = "pixel space" if "pixel_mean" in (run.meta.get("extra") or {}) else "the autoencoder's latent space (its units, not standardized)"
        print(
            f"note: {run.directory} is an `adasym latent` run: these are samples in {space} ({run.dim}-D), "
            f"not images; the run's decoded samples are in {run.directory / 'samples.png'}"
        )
    return 0


def run_kind(run) -> str:
    """``"sbi"`` (written by ``adasym sbi``), ``"latent"`` (``adasym latent``) or ``"train"``."""
    return _kind_of(run.meta)


def _kind_of(meta: dict[str, Any]) -> str:
    """:func:`run_kind` from a run's checkpoint metadata."""
    extra = meta.get("extra") or {}
    if "sbi" in extra:
        return "sbi"
    if "latent_mean" in extra or "pixel_mean" in extra:
        return "latent"
    return "train"


def cmd_plot(args) -> int:
    from adasym_jax.arrays import load_array
    from adasym_jax.plotting import figure_names, plot_latent_run, plot_run, plot_sbi_run
    from adasym_jax.results import METRICS_FILE

    # Everything that can be wrong with the run, its files or --out fails before anything is compiled.
    meta, config, settings = _check_run_files(args.run)
    directory = Path(args.run)
    out = Path(args.out) if args.out else directory
    _check_folder(out)
    metrics = _read_metrics(directory)
    kind = _kind_of(meta)
    if kind != "train" and metrics is None:
        raise ValueError(f"{directory}: no {METRICS_FILE}; an `adasym {kind}` run is plotted from its curves")
    if metrics is not None:
        _check_plot_metrics(metrics, directory / METRICS_FILE, kind)
    try:
        names = figure_names(kind, meta["dim"], config.context_dim, settings, metrics)
    except ValueError as e:
        raise ValueError(f"{directory}: {e}") from None
    # Redrawing a run's own figures in its own folder (the default --out) replaces what the run
    # wrote, not the user's files; any other folder keeps its files without --overwrite.
    if out.resolve() != directory.resolve():
        for name in names:
            refuse_existing(out / name, args.overwrite)
    data = None
    if kind == "train":
        preview = directory / "data_preview.npy"
        if preview.is_file():
            data = load_array(str(preview), "the run's data preview", dim=meta["dim"], min_rows=1)
        else:
            data, _, _ = _load_train_data(settings, report=False)
            if data.shape[1] != meta["dim"]:
                raise ValueError(f"{directory}: the run's data now has dim {data.shape[1]}, the checkpoint {meta['dim']}")
    run = _load_run(directory, checked=True)
    _make_folder(out)
    try:
        if kind == "sbi":
            paths = plot_sbi_run(run, metrics, out)
        elif kind == "latent":
            paths = plot_latent_run(run, metrics, out)
            for extra in ("samples.png", "reconstructions.png"):
                if (run.directory / extra).is_file():
                    print(f"decoded images: {run.directory / extra} (written by the run)")
        else:
            paths = plot_run(run, data, metrics, out)
    except KeyError as e:
        raise ValueError(f"{run.directory}: {METRICS_FILE} lacks the entry {e} that the plot needs") from None
    for path in paths:
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit code (the console script passes it to ``sys.exit``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(join_negative_values(argv))
    except UsageError as err:
        print(_usage_line(err), file=sys.stderr)
        return 2
    except SystemExit as err:  # --help
        return int(err.code or 0)
    args.argv = argv
    if args.version:
        from adasym_jax._version import __version__

        print(__version__)
        return 0
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = args.func(args)
    except UsageError as err:
        print(_usage_line(err), file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"adasym: error: {msg}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError, IndexError, EOFError) as err:
        # Last resort: a malformed input file that got past the checks of the loaders above.
        if os.environ.get("ADASYM_DEBUG", "") not in ("", "0"):
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"adasym: error: {type(err).__name__}{': ' + msg if msg else ''} (set ADASYM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("adasym: interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
