"""Argument parsing shared by every ``adasym`` subcommand (:mod:`adasym_jax.cli`,
:mod:`adasym_jax.sbi_cli`, :mod:`adasym_jax.latent_cli`): seeds, number lists, ``--set``, ``--overwrite``.

Below the three command modules (it imports none of them), so the subcommands share these
helpers without importing each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

#: Options whose value is a comma-separated list of numbers that may start with a minus sign.
NUMBER_LIST_OPTIONS = ("--context", "--observation")
_NUMBER_LIST = re.compile(r"^-\.?\d[-+.,\deE\s]*$")


def parse_seeds(text: str) -> list[int]:
    """``"5"`` -> seeds 0–4; ``"2,7"`` -> [2, 7]. Raises ``ValueError`` on bad input."""
    from adasym_jax.runner import seed_list

    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--seeds must be a count or a comma-separated list of integers, got {text!r}") from None
    if not vals:
        raise ValueError("--seeds is empty")
    if any(v < 0 for v in vals):
        raise ValueError(f"seeds must be >= 0, got {text!r}")
    spec = vals[0] if len(parts) == 1 and "," not in text else vals
    return seed_list(spec)


def parse_numbers(text: Optional[str], option: str) -> Optional[np.ndarray]:
    """``"-0.64,0.16"`` -> float32 array; ``None`` stays ``None``. Raises ``ValueError`` naming
    ``option`` on text that is not a non-empty list of finite numbers."""
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated numbers, got {text!r}") from None
    arr = np.asarray(vals, np.float32)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{option} must be finite numbers, got {text!r}")
    return arr


def join_negative_values(argv: Sequence[str], options: Iterable[str] = NUMBER_LIST_OPTIONS) -> list[str]:
    """``["--context", "-0.64,0.16"]`` -> ``["--context=-0.64,0.16"]``.

    argparse takes a token that starts with ``-`` and is not a plain negative number for an
    option, so ``--context -0.64,0.16`` would fail with "expected one argument". Only a
    number-list option followed by a token that looks like a list of numbers is joined;
    everything after a bare ``--`` is left alone.
    """
    options = tuple(options)
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            out.extend(args[i:])
            break
        if tok in options and i + 1 < len(args) and _NUMBER_LIST.match(args[i + 1]):
            out.append(f"{tok}={args[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def add_set_argument(parser: argparse.ArgumentParser, dest: str = "overrides", help: str = "") -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]``, repeatable: every pair of every flag is collected."""
    parser.add_argument(
        "--set",
        dest=dest,
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help=help or "TrainConfig overrides, one or more per flag (e.g. --set lr_flow=1e-4 ebm_blocks=3)",
    )


def apply_overrides(config, overrides: Iterable[str]):
    """``config`` with each ``KEY=VALUE`` applied (:func:`adasym_jax.config.parse_override`).

    An unknown key raises a one-line ``ValueError`` with the closest field names of the config.
    """
    from adasym_jax.config import parse_override

    names = [f.name for f in dataclasses.fields(config)]
    for text in overrides:
        key = text.split("=", 1)[0].strip() if "=" in text else None
        if key is not None and key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else " (see TrainConfig for the keys)"
            raise ValueError(f"unknown config key {key!r} in --set {text}{hint}")
        config = parse_override(text, config)
    return config


def stopping_fraction(validation_fraction: Optional[float], patience: Optional[int], default: float = 0.1) -> float:
    """The validation share of a command whose split serves early stopping only (``adasym
    latent``, ``benchmarks/latent.py``): 0 without ``--patience``, where a given
    ``--validation-fraction`` is refused; ``default`` when it is not given. Checked by
    :func:`adasym_jax.runner.check_early_stopping`; a bad value is a one-line ``ValueError``."""
    from adasym_jax.runner import check_early_stopping

    if patience is None:
        if validation_fraction is not None:
            raise ValueError("--validation-fraction is for a run to convergence: give --patience too")
        return 0.0
    fraction = default if validation_fraction is None else validation_fraction
    check_early_stopping(fraction, patience)
    return fraction


def add_overwrite_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--overwrite``: without it, a command refuses to replace what its output would replace
    (:func:`refuse_existing`)."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def refuse_existing(path, overwrite: bool, present: Optional[bool] = None, state: str = "exists", hint: str = "") -> None:
    """Raise a one-line ``ValueError`` (exit code 1) "``path`` exists; pass --overwrite to replace
    it" unless ``overwrite`` is set: the one rule of every command that writes outputs.

    ``present``: whether there is something to replace (default: ``path`` exists); ``state``
    says what is there (``train``: "already exists and is not empty"); ``hint`` ends the line."""
    path = Path(path)
    if overwrite or not (path.exists() if present is None else present):
        return
    raise ValueError(f"{path} {state}; pass --overwrite to replace it{hint}")
