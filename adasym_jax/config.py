"""Training configuration: static settings in one frozen dataclass, defaults from Appendix D.1."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional, Sequence

METHODS = ("adasym", "nf", "weighted", "wgan")
REVERSE_GRADS = ("score", "pathwise")
ZETA_GRADS = ("batch", "importance")
DUAL_OPTIMIZERS = ("sgd", "adam")
FLOWS = ("autoregressive", "coupling", "nsf")
THETA_BASELINES = ("auto", "loo", "log_zeta", "log_zeta_loo", "none")

#: Fields added after the first release, with the value that reproduces a run saved before them
#: (used by :meth:`TrainConfig.from_dict` when a saved config lacks the key).
#: Seed of the key every evaluation draws its ζ̂ samples with when none is given
#: (``Trainer.evaluate``, ``results.log_densities``, ``export.export_state``), so that the same
#: state always gets the same ζ̂, whichever of them evaluates it.
EVAL_SEED = 12345

# (zeta_per_condition: SBI runs of that time used K = 4, recorded in their checkpoint's
# extra["sbi"]; loading them for sampling or evaluation does not need it.)
LEGACY_VALUES = {"flow": "coupling", "theta_baseline": "none", "ebm_base_scale": None, "zeta_per_condition": 0, "zeta_refresh_every": 1, "grad_clip": None, "unroll_flow": False}

#: Settings that change how the step is traced and compiled, not the numbers it computes (up to
#: float reduction order): a saved run may resume under either value.
TRACE_ONLY_FIELDS = ("unroll_flow",)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every static setting of a run. Arrays live in the train state; this stays hashable.

    Model (C.1, D.1): ``flow`` is ``"autoregressive"`` (MADE conditioners with alternating
    orders: zuko's NSF, the paper's flow; every layer splines every coordinate) or
    ``"coupling"`` (half the coordinates per layer: half the splines) or ``"nsf"`` (sbi's NSF:
    couplings with residual conditioners of width ``flow_hidden[0]`` and ``len(flow_hidden)``
    blocks, each followed by an LU linear layer); ``num_transforms``,
    ``num_bins``, ``flow_hidden``, ``bound`` for p_θ; ``ebm_hidden``, ``ebm_blocks``,
    ``film_layers``, ``temperature`` (B.8) for q_ψ; ``ebm_base_scale`` σ (not in the paper;
    ``None`` off) adds −‖x‖²/(2σ²) to f_ψ so that ζ is finite; ``context_dim`` > 0 makes both
    conditional; ``unroll_flow`` traces the flow's scan over its layers unrolled (faster steps,
    slower compile; the same numbers up to float reduction order).

    Objective (B.1–B.8): ``num_zeta_samples`` M for ζ̂ (eq. (12)); ``eps_zeta`` ε_ζ;
    ``negative_nll`` uses the B.7 relaxation for the two NLL constraints; ``reverse_grad`` is
    ``"score"`` (eq. (18), the paper) or ``"pathwise"`` (through the sampling path);
    ``zeta_grad`` is ``"batch"`` (∇ζ from the reverse-KL samples, eq. (15)) or
    ``"importance"`` (∇ζ from the M samples, eq. (14)); ``num_reverse_samples`` N of flow
    samples y per step (``None``: the batch size). Where the ζ samples come from
    (:mod:`adasym_jax.zeta_sources`): ``zeta_per_condition`` K ≥ 1 draws K at every condition
    of the batch and estimates ζ(u_i) per condition (B.6; conditional models; 0: M samples at
    conditions drawn from the batch, one pooled ζ̂); ``zeta_refresh_every`` K > 1 keeps the M
    samples in the state and redraws them every K steps (D.3; 1: fresh every step, Algorithm 2
    as printed). ``theta_baseline`` is the constant taken
    from eq. (18)'s weight log p_θ(y) − log q̃_ψ(y) (unbiased, lower variance; docs/decisions.md):
    ``"loo"`` the leave-one-out mean of the other samples' weights, ``"log_zeta"`` minus
    log ζ̂ (per condition u_i under B.6), ``"log_zeta_loo"`` both, ``"auto"`` (default)
    ``"loo"`` (measured best or within 6 %, conditional too), ``"none"`` the paper's weight
    verbatim.

    Optimization (C.3, D.1): Adam with ``adam_b1``, ``adam_b2`` for θ (``lr_flow``) and ψ
    (``lr_ebm``), each gradient first clipped to global norm ``grad_clip`` when set (``None``,
    default: no clipping, as the paper; sbi's NPE trains with 5.0); multipliers by ``dual_optimizer`` (``"adam"``, default: Adam with the same
    β, Algorithm 3's single optimizer step; ``"sgd"``: projected ascent of Algorithm 1) with ``lr_dual`` for fw/rv/prx and ``lr_dual_zeta`` for the ζ
    pair; initial values ``lambda_init`` and ``lambda_zeta_init``. ``batch_size`` ``None`` is
    full batch. ``method`` picks the step: ``adasym`` (dual), ``nf`` (maximum likelihood),
    ``weighted`` (P-W with fixed ``weights`` (fw, rv, prx)), ``wgan`` (WGAN-GP with
    ``gp_weight`` and ``critic_steps``).
    """

    method: str = "adasym"
    # models
    flow: str = "autoregressive"
    num_transforms: int = 5
    num_bins: int = 8
    flow_hidden: tuple[int, ...] = (64, 64)
    bound: float = 5.0
    ebm_hidden: int = 64
    ebm_blocks: int = 6
    film_layers: int = 2
    temperature: float = 1.0
    ebm_base_scale: Optional[float] = None
    context_dim: int = 0
    unroll_flow: bool = True
    # objective
    num_zeta_samples: int = 1000
    eps_zeta: float = 0.1
    negative_nll: bool = True
    reverse_grad: str = "score"
    zeta_grad: str = "batch"
    num_reverse_samples: Optional[int] = None
    theta_baseline: str = "auto"
    zeta_per_condition: int = 0
    zeta_refresh_every: int = 1
    # optimization
    lr_flow: float = 1e-3
    lr_ebm: float = 1e-4
    lr_dual: float = 1e-4
    lr_dual_zeta: float = 1e-3
    adam_b1: float = 0.0
    adam_b2: float = 0.9
    grad_clip: Optional[float] = None
    dual_optimizer: str = "adam"
    lambda_init: float = 0.01
    lambda_zeta_init: float = 0.0
    lambda_floor: float = 1e-6
    batch_size: Optional[int] = None
    # baselines
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gp_weight: float = 0.1
    critic_steps: int = 1
    # evaluation
    eval_zeta_samples: int = 10000

    def __post_init__(self):
        object.__setattr__(self, "flow_hidden", tuple(int(h) for h in self.flow_hidden))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        _check_choice("method", self.method, METHODS)
        _check_choice("reverse_grad", self.reverse_grad, REVERSE_GRADS)
        _check_choice("zeta_grad", self.zeta_grad, ZETA_GRADS)
        _check_choice("dual_optimizer", self.dual_optimizer, DUAL_OPTIMIZERS)
        _check_choice("flow", self.flow, FLOWS)
        _check_choice("theta_baseline", self.theta_baseline, THETA_BASELINES)
        if self.grad_clip is not None and not (isinstance(self.grad_clip, (int, float)) and not isinstance(self.grad_clip, bool) and 0 < self.grad_clip < float("inf")):
            raise ValueError(f"grad_clip must be None or a finite number > 0, got {self.grad_clip!r}")
        if self.ebm_base_scale is not None and not (isinstance(self.ebm_base_scale, (int, float)) and 0 < self.ebm_base_scale < float("inf")):
            raise ValueError(f"ebm_base_scale must be None or a finite number > 0, got {self.ebm_base_scale!r}")
        for name in ("num_transforms", "num_bins", "ebm_hidden", "num_zeta_samples", "eval_zeta_samples", "critic_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ebm_blocks < 0 or self.context_dim < 0:
            raise ValueError("ebm_blocks and context_dim must be >= 0")
        if self.zeta_per_condition < 0 or self.zeta_refresh_every < 1:
            raise ValueError(
                f"zeta_per_condition must be >= 0 and zeta_refresh_every >= 1, got {self.zeta_per_condition} and {self.zeta_refresh_every}"
            )
        if self.zeta_per_condition and not self.context_dim:
            raise ValueError("zeta_per_condition (B.6's ζ per condition) needs a conditional model: set context_dim >= 1")
        if self.zeta_refresh_every > 1 and self.context_dim:
            raise ValueError("zeta_refresh_every > 1 (D.3's cached ζ samples) covers unconditional models; use 1 with context_dim")
        if self.temperature <= 0 or self.bound <= 0:
            raise ValueError("temperature and bound must be > 0")
        if len(self.weights) != 3:
            raise ValueError(f"weights must be (w_fw, w_rv, w_prx), got {self.weights}")
        if self.negative_nll and self.method == "adasym" and self.lambda_init <= 0:
            raise ValueError("the B.7 relaxation (negative_nll) needs lambda_init > 0")
        for name in ("batch_size", "num_reverse_samples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        # Numeric ranges (NaN and ±inf fail every float check), before anything compiles.
        import math
        import numbers

        def _num(v):
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

        for name, ok, want in (
            ("lr_flow", lambda v: _num(v) and v > 0, "a finite number > 0"),
            ("lr_ebm", lambda v: _num(v) and v > 0, "a finite number > 0"),
            ("lr_dual", lambda v: _num(v) and v > 0, "a finite number > 0"),
            ("lr_dual_zeta", lambda v: _num(v) and v > 0, "a finite number > 0"),
            ("eps_zeta", lambda v: _num(v) and v >= 0, "a finite number >= 0"),
            ("temperature", lambda v: _num(v) and v > 0, "a finite number > 0"),
            ("bound", lambda v: _num(v) and v > 0, "a finite number > 0"),
            ("adam_b1", lambda v: _num(v) and 0 <= v < 1, "in [0, 1)"),
            ("adam_b2", lambda v: _num(v) and 0 <= v < 1, "in [0, 1)"),
            ("lambda_init", lambda v: _num(v) and v >= 0, "a finite number >= 0"),
            ("lambda_zeta_init", lambda v: _num(v) and v >= 0, "a finite number >= 0"),
            ("lambda_floor", lambda v: _num(v) and v >= 0, "a finite number >= 0"),
            ("gp_weight", lambda v: _num(v) and v >= 0, "a finite number >= 0"),
            ("weights", lambda v: all(_num(w) and w >= 0 for w in v), "three finite numbers >= 0"),
            ("flow_hidden", lambda v: all(h >= 1 for h in v), "layer widths >= 1"),
        ):
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"{name} must be {want}, got {value!r}")

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes``; unknown names raise ``ValueError``."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The config a saved ``to_dict()`` describes. Keys it lacks that were added after the
        first release take their :data:`LEGACY_VALUES` (what such a run used) when ``d`` names
        every older field (a saved config); otherwise the defaults."""
        saved = set(d) >= {f.name for f in dataclasses.fields(cls)} - set(LEGACY_VALUES)
        legacy = {k: v for k, v in LEGACY_VALUES.items() if saved and k not in d}
        return cls().replace(**legacy, **d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def parse_override(text: str, config: TrainConfig) -> TrainConfig:
    """Apply one ``key=value`` override (``--set`` on the command line), typed from the field."""
    if "=" not in text:
        raise ValueError(f"override must be key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    fields = {f.name: f for f in dataclasses.fields(config)}
    if key not in fields:
        raise ValueError(f"unknown config key {key!r}")
    current = getattr(config, key)
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            value: Any = raw.lower() in ("true", "1")
        elif isinstance(current, tuple):
            value = tuple(type(current[0])(v) for v in raw.split(",")) if current else tuple(raw.split(","))
        elif current is None:
            kind = float if "float" in str(fields[key].type) else int
            value = None if raw.lower() == "none" else kind(raw)
        elif isinstance(current, int):
            value = None if raw.lower() == "none" else int(raw)
        elif isinstance(current, float):
            value = float(raw)
        else:
            value = raw
    except ValueError:
        raise ValueError(f"cannot parse {key}={raw!r} as {type(current).__name__}") from None
    return config.replace(**{key: value})
