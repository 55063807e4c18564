"""Shared pieces of the 2D benchmarks (gmm40.py, density2d.py): multi-member training
through the library's one loop (:func:`adasym_jax.runner.fit`, NaN-tolerant with
``on_nonfinite="freeze"``), summaries and formatting.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from adasym_jax.config import TRACE_ONLY_FIELDS, TrainConfig
from adasym_jax.runner import FitResult, Trainer, fit
from adasym_jax.state import TrainState


@dataclasses.dataclass
class Curves:
    """Test curves of every member (rows) at ``eval_steps`` plus timings."""

    label: str
    eval_steps: np.ndarray
    test_nll_p: np.ndarray  # (members, E)
    test_nll_q: np.ndarray
    log_zeta: np.ndarray
    lambdas: dict  # name -> (members, E), λ at each evaluation
    diverged_at: np.ndarray  # (members,) first step with a non-finite metric, or -1
    steps_per_second: float
    compile_seconds: float
    state: TrainState

    @property
    def best(self) -> np.ndarray:
        return np.nanmin(np.where(np.isfinite(self.test_nll_p), self.test_nll_p, np.nan), axis=1)

    @property
    def last(self) -> np.ndarray:
        return self.test_nll_p[:, -1]


#: Extra rows of the 2D benchmarks: the dual with one TrainConfig field changed from its preset's,
#: and what the change means (gmm40.py and density2d.py train them beside the dual and NF).
EXTRA_DUALS = {
    "dual_sgd": ({"dual_optimizer": "sgd"}, "plain projected ascent on the multipliers (Algorithm 1; the default is C.3's Adam)"),
    "dual_pathwise": ({"reverse_grad": "pathwise"}, "the reverse KL's θ gradient through the sampling path instead of eq. (18)'s score function"),
    "dual_base": ({"ebm_base_scale": 3.0}, "an EBM with a decaying base, f_ψ − ‖x‖²/(2·3²), so that ζ is finite (not in the paper)"),
}


def extra_line(name: str, c: "Curves", dual: Optional["Curves"], lead: str = "- Extra row") -> str:
    """One verdict bullet for the extra row ``name`` (curves ``c``), opened by ``lead``: its change,
    its ζ̂ against the band [1, 1 + ε_ζ] and [0.9, 1.2], and its best and last test NLL of p_θ
    beside the dual's."""
    change, what = EXTRA_DUALS[name]
    z = np.exp(c.log_zeta)
    field = ", ".join(f"{k}={v}" for k, v in change.items())
    return (f"{lead} {name} ({what}; `{field}`, {int(c.eval_steps[-1])} steps): "
            f"ζ̂ range [{np.nanmin(z):.3f}, {np.nanmax(z):.3f}], {100 * np.mean((z >= 1.0) & (z <= 1.1)):.0f}% of evaluations inside [1, 1.1], "
            f"{100 * np.mean((z >= 0.9) & (z <= 1.2)):.0f}% inside [0.9, 1.2]; last test NLL {pm(c.last)}, best {pm(c.best)}"
            + (f" (the dual: {pm(dual.last)}, {pm(dual.best)})." if dual is not None else "."))


def train_members(
    trainer: Trainer,
    state: TrainState,
    x: np.ndarray,
    test: np.ndarray,
    steps: int,
    eval_every: int,
    label: str,
    log=print,
    resume_dir: Optional[Path] = None,
    save_every_seconds: float = 300.0,
) -> Curves:
    """Train all members of ``state`` for ``steps`` steps, evaluating every ``eval_every``:
    :func:`adasym_jax.runner.fit` with ``on_nonfinite="freeze"`` (a member that diverges stops
    at its last good state, its curve turns NaN and its step is recorded; the others go on).

    ``resume_dir``: a folder for this group's checkpoint (the state plus the curves so far),
    written at most every ``save_every_seconds`` and at the end; a run that finds one for the
    same config, members and schedule continues from it (the step count, keys and data order
    are in the state, so the continued run is the same run), else starts afresh."""
    members = int(np.asarray(state.step).shape[0])
    spec = {"label": label, "config": trainer.config.to_dict(), "members": members, "steps": steps, "eval_every": eval_every,
            "data": _fingerprint(x, test, state)}
    prev = _load_partial(resume_dir, spec, state) if resume_dir is not None else None
    if prev is not None:
        state, before = prev
        log(f"[{label}] resuming from step {int(before['eval_steps'][-1])} ({resume_dir}; trained at commit {before.get('commit', '?')})")
    else:
        before = None
    start = int(np.asarray(state.step).reshape(-1)[0])
    last_save = [time.monotonic()]

    def curves_of(r: FitResult) -> dict:
        at = np.asarray(r.eval_steps) - start - 1  # history column of each evaluation's last step
        part = {
            "eval_steps": np.asarray(r.eval_steps, np.int64),
            "test_nll_p": r.evals["test_nll_p"],
            "test_nll_q": r.evals["test_nll_q"],
            "log_zeta": r.evals["log_zeta"],
            "lambdas": {k[len("lambda_"):]: v[:, at] for k, v in r.history.items() if k.startswith("lambda_")},
            "diverged_at": r.diverged_step,
            "run_seconds": (r.eval_steps[-1] - start) / max(r.steps_per_second, 1e-9) if r.eval_steps else 0.0,
            "compile_seconds": r.compile_seconds,
        }
        return part if before is None else _joined(before, part)

    def line(r: FitResult) -> None:
        done = r.eval_steps[-1]
        log(
            f"[{label}] step {done}/{steps}: test NLL p {np.nanmean(r.evals['test_nll_p'][:, -1]):.4f} "
            f"(members {members}, diverged {int(np.sum(r.diverged_step >= 0))}, {r.steps_per_second:.2f} steps/s)"
        )
        if resume_dir is not None and time.monotonic() - last_save[0] >= save_every_seconds and done < steps:
            _save_partial(resume_dir, spec, r.state, curves_of(r))
            last_save[0] = time.monotonic()

    remaining = 0 if before is not None and before.get("finished") else steps - start
    if remaining > 0:
        r = fit(
            np.asarray(x, np.float32), test_data=np.asarray(test, np.float32), config=trainer.config, seeds=members,
            num_steps=remaining, eval_every=eval_every, state=state, trainer=trainer, progress=False, standardize=False,
            on_nonfinite="freeze", on_eval=line,
        )
        c, final_state = curves_of(r), r.state
        if resume_dir is not None:  # finished: at the step count, or every member diverged
            _save_partial(resume_dir, spec, final_state, {**c, "finished": True})
    else:
        c, final_state = before, state
    return Curves(
        label=label,
        eval_steps=np.asarray(c["eval_steps"]),
        test_nll_p=np.asarray(c["test_nll_p"]),
        test_nll_q=np.asarray(c["test_nll_q"]),
        log_zeta=np.asarray(c["log_zeta"]),
        lambdas={k: np.asarray(v) for k, v in c["lambdas"].items()},
        diverged_at=np.asarray(c["diverged_at"]),
        steps_per_second=(c["eval_steps"][-1] if len(c["eval_steps"]) else 0) / max(c["run_seconds"], 1e-9),
        compile_seconds=float(c["compile_seconds"]),
        state=final_state,
    )


def _joined(before: dict, part: dict) -> dict:
    """The curves of a resumed run: ``before`` (loaded) followed by ``part``; a member that had
    diverged before keeps that step and NaN curves (it resumes from its frozen last good state,
    trains again and usually diverges again, later; that compute is wasted, and its final state
    is not the frozen one of an uninterrupted run)."""
    gone = np.asarray(before["diverged_at"]) >= 0
    cat = lambda a, b: np.concatenate([np.asarray(a, np.float64), np.where(gone[:, None], np.nan, b)], axis=1)  # noqa: E731
    return {
        "eval_steps": np.concatenate([np.asarray(before["eval_steps"], np.int64), part["eval_steps"]]),
        "test_nll_p": cat(before["test_nll_p"], part["test_nll_p"]),
        "test_nll_q": cat(before["test_nll_q"], part["test_nll_q"]),
        "log_zeta": cat(before["log_zeta"], part["log_zeta"]),
        "lambdas": {k: cat(before["lambdas"][k], v) for k, v in part["lambdas"].items()},
        "diverged_at": np.where(gone, before["diverged_at"], part["diverged_at"]),
        "run_seconds": float(before["run_seconds"]) + part["run_seconds"],
        "compile_seconds": float(before["compile_seconds"]) + part["compile_seconds"],
    }


def _fingerprint(x, test, state: TrainState) -> str:
    """A hash of the training and test data and the initial state (a P-W grid's λ included)."""
    import hashlib

    h = hashlib.sha256()
    for a in (x, test, *jax.tree.leaves(state)):
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]


def git_commit() -> str:
    """The short commit of the checkout (``?`` outside git)."""
    import subprocess

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return out.stdout.strip() or "?"


def _save_partial(folder: Path, spec: dict, state: TrainState, curves: dict) -> None:
    """Checkpoint plus ``curves.json`` (with the commit that trained the latest part)."""
    from adasym_jax.checkpoint import save_checkpoint
    from adasym_jax.files import write_json

    folder = Path(folder)
    save_checkpoint(folder, state, TrainConfig.from_dict(spec["config"]), 2, list(range(spec["members"])), extra={"spec": spec})
    write_json(folder / "curves.json", {"spec": spec, "commit": git_commit(), **curves})


def _load_partial(folder: Path, spec: dict, template: TrainState):
    """``(state, curves)`` of a saved partial run with this ``spec``, or ``None``."""
    import json

    from adasym_jax.checkpoint import is_checkpoint, load_checkpoint

    folder = Path(folder)
    if not (is_checkpoint(folder) and (folder / "curves.json").is_file()):
        return None
    curves = json.loads((folder / "curves.json").read_text())
    want = json.loads(json.dumps(spec))
    saved = curves.get("spec") or {}
    if "data" not in saved:  # saved before the data fingerprint joined the spec
        want.pop("data", None)
    for spec_ in (saved, want):  # a run resumes whether or not its flow's layer loop is unrolled
        for k in TRACE_ONLY_FIELDS:
            spec_.get("config", {}).pop(k, None)
    if saved != want:
        return None
    state, _ = load_checkpoint(folder, template=template)
    nan = lambda v: np.asarray([[np.nan if e is None else e for e in row] for row in v], np.float64)  # noqa: E731
    for k in ("test_nll_p", "test_nll_q", "log_zeta"):
        curves[k] = nan(curves[k])
    curves["lambdas"] = {k: nan(v) for k, v in curves["lambdas"].items()}
    curves["diverged_at"] = np.asarray(curves["diverged_at"], np.int64)
    return jax.tree.map(np.asarray, state), curves


def pm(a, digits: int = 3) -> str:
    """``mean ± std`` over finite entries (``n/a`` if none; notes how many were non-finite)."""
    a = np.asarray(a, np.float64)
    ok = a[np.isfinite(a)]
    if ok.size == 0:
        return "n/a (all diverged)"
    s = f"{ok.mean():.{digits}f} ± {ok.std():.{digits}f}"
    if ok.size < a.size:
        s += f" ({a.size - ok.size} of {a.size} diverged)"
    return s


def device_string() -> str:
    d = jax.devices()[0]
    return (
        f"{d.platform} ({getattr(d, 'device_kind', '?')}), {jax.device_count()} device(s), "
        f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, jax {jax.__version__}"
    )


_START_LOAD = os.getloadavg()  # taken when a benchmark imports this module, i.e. at its start


def load_text(load) -> str:
    """A load average (1, 5, 15 min) as text."""
    return ", ".join(f"{v:.2f}" for v in load)


def device_text() -> str:
    return f"{device_string()}, {os.cpu_count()} CPU cores"


def machine_line() -> str:
    """The device and the 1-min load average at the start of this command and now, so a reader can
    tell whether the CPU was otherwise idle (load ≈ the jobs this command runs) or shared."""
    return (f"Device: {device_text()}; load average (1, 5, 15 min) "
            f"{load_text(_START_LOAD)} at the start of this command, "
            f"{load_text(os.getloadavg())} when this file was written.  ")


def provenance() -> dict:
    """What a results file keeps about the command that produced a run, recorded when the run ends:
    the command, the library commit, the finish time (UTC), the device and the load average at the
    command's start and at the run's end. A report rebuilt later (``--report-only``) states these
    instead of the rebuilding machine's."""
    return {"command": command_line(), "commit": git_commit(), "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "device": device_text(),
            "load_start": [round(v, 2) for v in _START_LOAD], "load_end": [round(v, 2) for v in os.getloadavg()]}


def _load(r: dict, end: str) -> str:
    if r.get("load_start") and r.get("load_end"):
        return (f"load average (1, 5, 15 min) {load_text(r['load_start'])} at the command's start, "
                f"{load_text(r['load_end'])} at the end of {end}")
    return "load average not recorded"


def record_lines(r: dict) -> list[str]:
    """A report's header for runs that one recorded command made: its command and commit, when it
    finished, its device and load average, and any ``remark`` (fields entered by hand may be None)."""
    remark = f"; {r['remark']}" if r.get("remark") else ""
    return [f"Command: `{r.get('command') or '?'}` at commit `{r.get('commit') or '?'}`, {finished(r)}{remark}  ",
            f"Device: {r.get('device') or 'not recorded'}; {_load(r, 'its last run')}.  "]


def provenance_lines(records: dict) -> list[str]:
    """One bullet per command behind ``records`` (run name → :func:`provenance` dict), in the order
    the runs are listed: the runs it made, its command and commit, when it finished, its device, the
    load average at its start and end, and any ``remark`` stored with it. Unknown fields are said to
    be unknown."""
    by_cmd: dict = {}
    for name, r in records.items():
        by_cmd.setdefault((r.get("command") or "?", r.get("commit") or "?"), []).append((name, r))
    lines = []
    for (cmd, commit), named in by_cmd.items():
        r = named[-1][1]
        remark = f"; {r['remark']}" if r.get("remark") else ""
        lines.append(f"- {', '.join(n for n, _ in named)}: `{cmd}` at commit `{commit}`, {finished(r)}, on "
                     f"{r.get('device') or 'a device not recorded'}; {_load(r, 'its last run')}{remark}.")
    return lines


def finished(record: dict) -> str:
    return f"finished {record['utc']} UTC" if record.get("utc") else "finish time not recorded"


def notes_lines(path: Path) -> list[str]:
    """Hand-written notes kept beside a results file (e.g. ``gmm40_notes.md``), copied into the report
    so that regenerating it keeps them ([] if there are none)."""
    return ["", path.read_text().rstrip()] if path.is_file() else []


def compact_json(obj, indent: int = 2, _level: int = 0) -> str:
    """``json.dumps(obj, indent=indent)`` but each list of scalars (a training curve, a per-seed
    list) on one line: a results file with curves of 10⁴ points stays readable, and smaller (one
    newline and indent per number saved: ``sbi_gmm_fixed.json`` 7.4 → 4.4 MB).
    ``json.loads`` of the text gives back exactly what ``json.dumps`` would."""
    pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {compact_json(v, indent, _level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)) and obj and any(isinstance(v, (dict, list, tuple)) for v in obj):
        items = [inner + compact_json(v, indent, _level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def command_line() -> str:
    """The command as typed, with absolute paths inside the repository written relative to its root
    (a run from another checkout records the same command)."""
    root = Path(__file__).resolve().parents[1]
    return "python " + " ".join(_repo_relative(a, root) for a in sys.argv)


def _repo_relative(arg: str, root: Path) -> str:
    path = Path(arg).resolve() if Path(arg).is_absolute() else None
    return str(path.relative_to(root)) if path is not None and path.is_relative_to(root) else arg


def oracle_nll(log_prob, test: np.ndarray) -> Optional[float]:
    """−mean log π(x) of the test set under the true density (None if unknown)."""
    return None if log_prob is None else float(-np.mean(log_prob(test)))
