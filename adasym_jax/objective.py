"""The resilient constrained problem of Appendix B: ζ estimate, constraints, Lagrangian (11),
closed-form relaxations and the surrogate losses whose gradients are eqs. (15) and (18).

Notation (all per-sample arrays are ``(n,)``):
  ``log_p_x`` = log p_θ(x_i) on data, ``log_p_y`` = log p_θ(y_i) on flow samples,
  ``log_q_x`` / ``log_q_y`` = log q̃_ψ = f_ψ / T on data / samples (the EBM's output),
  ``T`` = temperature of B.8 (the reverse KL is weighted by T as in eq. (22)).

Multipliers are a dict with keys ``fw`` (forward NLL), ``rv`` (reverse KL), ``prx`` (proxy NLL),
``zeta_u`` (ζ ≤ 1 + ε_ζ) and ``zeta_l`` (1 ≤ ζ).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
sg = jax.lax.stop_gradient

MULTIPLIER_NAMES = ("fw", "rv", "prx", "zeta_u", "zeta_l")
KL_MULTIPLIERS = ("fw", "rv", "prx")
ZETA_MULTIPLIERS = ("zeta_u", "zeta_l")
# Constraints whose resilient relaxation uses the B.7 form (they are NLLs, which may be < 0).
NLL_CONSTRAINTS = ("fw", "prx")


def log_zeta_estimate(log_q: Array, log_p: Array) -> Array:
    """Algorithm 2: log ζ̂ = logsumexp(log q̃(y) − log p(y)) − log M for ``M`` samples y ~ p_θ.

    Args: ``log_q``, ``log_p``: ``(M,)``. Returns a scalar.
    """
    m = log_q.shape[-1]
    return jax.nn.logsumexp(log_q - log_p, axis=-1) - math.log(m)


def resilient_epsilon(lam: Array) -> Array:
    """Eq. (13): the relaxation ε minimizing ε² − λ ε is ε = λ / 2."""
    return 0.5 * lam


def resilient_delta(lam: Array) -> Array:
    """Eq. (20): the δ minimizing −δ + λ δ² (λ > 0) is δ = 1 / (2 λ)."""
    return 0.5 / lam


def relaxed_violation(value: Array, lam: Array, negative_nll: bool) -> Array:
    """Slack of a resilient constraint at the closed-form relaxation: the dual gradient ∇_λ L.

    Plain form (P-DYN): ``value − ε`` with ε = λ/2. B.7 form: ``value − ε + δ²`` with
    δ = 1/(2λ), i.e. ``value − λ/2 + 1/(4λ²)``.
    """
    out = value - resilient_epsilon(lam)
    if negative_nll:
        out = out + resilient_delta(lam) ** 2
    return out


def relaxation_cost(lam: Array, negative_nll: bool) -> Array:
    """The objective's part for one constraint at the closed forms: ε² (− δ in the B.7 form)."""
    cost = resilient_epsilon(lam) ** 2
    if negative_nll:
        cost = cost - resilient_delta(lam)
    return cost


def constraint_values(
    log_p_x: Array,
    log_q_x: Array,
    log_p_y: Array,
    log_q_y: Array,
    log_zeta: Array,
    temperature: float = 1.0,
) -> dict[str, Array]:
    """Constraint functions of B.1 (before relaxation), all scalars.

    ``fw`` = −mean log p_θ(x); ``rv`` = T·(mean[log p_θ(y) − log q̃_ψ(y)] + log ζ) (eq. (22));
    ``prx`` = −mean log q̃_ψ(x) + log ζ (the proxy NLL; see docs/decisions.md on eq. (19));
    ``zeta_u`` = ζ − 1 − ε_ζ is added by :func:`dual_gradients`; here ``zeta`` = ζ.

    ``log_zeta`` is a scalar, or ``(n,)``: one log ζ(u_i) per condition (B.6). rv and prx are
    linear in log ζ, so they take its mean over conditions, and the ζ constraint takes
    ``zeta`` = mean_i ζ(u_i) (for a scalar both reduce to the unconditional formulas exactly).
    """
    mean_log_zeta = jnp.mean(log_zeta)
    return {
        "fw": -jnp.mean(log_p_x),
        "rv": temperature * (jnp.mean(log_p_y - log_q_y) + mean_log_zeta),
        "prx": -jnp.mean(log_q_x) + mean_log_zeta,
        "zeta": jnp.mean(jnp.exp(log_zeta)),
    }


def multiplier_floor(name: str, negative_nll: bool, floor: float) -> float:
    """The lower bound of multiplier ``name``: ``floor`` for the B.7 (negative-NLL) form of the
    NLL constraints (``fw``, ``prx``), whose relaxation cost needs λ > 0; 0 for the others."""
    return floor if negative_nll and name in NLL_CONSTRAINTS else 0.0


def project_multipliers(lambdas: Mapping[str, Array], negative_nll: bool, floor: float) -> dict[str, Array]:
    """Projection of the ascended multipliers onto λ ≥ 0 (λ ≥ ``floor`` for B.7's NLL multipliers)."""
    return {k: jnp.maximum(v, multiplier_floor(k, negative_nll, floor)) for k, v in lambdas.items()}


def dual_gradients(
    values: Mapping[str, Array], lambdas: Mapping[str, Array], eps_zeta: float, negative_nll: bool
) -> dict[str, Array]:
    """Eq. (19) at the closed-form relaxations: ∇_λ L for every multiplier (ascend these).

    The B.7 form is used for the NLL constraints (``fw``, ``prx``) when ``negative_nll``.
    """
    return {
        "fw": relaxed_violation(values["fw"], lambdas["fw"], negative_nll),
        "rv": relaxed_violation(values["rv"], lambdas["rv"], False),
        "prx": relaxed_violation(values["prx"], lambdas["prx"], negative_nll),
        "zeta_u": values["zeta"] - 1.0 - eps_zeta,
        "zeta_l": 1.0 - values["zeta"],
    }


def lagrangian(
    values: Mapping[str, Array], lambdas: Mapping[str, Array], eps_zeta: float, negative_nll: bool
) -> Array:
    """Value of the Lagrangian (11) (B.7 form for NLLs if ``negative_nll``) at the closed-form
    ε and δ: Σ_c [cost_c(λ_c) + λ_c · slack_c] + ζ-constraint terms."""
    g = dual_gradients(values, lambdas, eps_zeta, negative_nll)
    total = 0.0
    for name in KL_MULTIPLIERS:
        neg = negative_nll and name in NLL_CONSTRAINTS
        total = total + relaxation_cost(lambdas[name], neg) + lambdas[name] * g[name]
    for name in ZETA_MULTIPLIERS:
        total = total + lambdas[name] * g[name]
    return total


def leave_one_out_mean(w: Array) -> Array:
    """b_i = mean_{j≠i} w_j over the last axis ``(..., N) -> (..., N)`` (zeros for N = 1).

    As a baseline for sample i of a score-function estimator it does not depend on sample i,
    so subtracting it leaves the estimator unbiased (E[b_i ∇ log p(y_i)] = E[b_i] E[∇ log p] = 0).
    """
    n = w.shape[-1]
    if n == 1:
        return jnp.zeros_like(w)
    return (jnp.sum(w, axis=-1, keepdims=True) - w) / (n - 1)


def theta_surrogate_score(
    log_p_x: Array,
    log_p_y: Array,
    log_q_y: Array,
    lambdas: Mapping[str, Array],
    temperature: float = 1.0,
    baseline: Optional[Array] = None,
) -> Array:
    """Surrogate loss for θ whose gradient is eq. (18) (score-function reverse KL).

    ``log_p_x`` and ``log_p_y`` must depend on θ (``log_p_y`` evaluated at samples y that
    carry no gradient); ``log_q_y`` is treated as a constant. The gradient is
      mean_i[−λ_fw ∇ log p(x_i)] + mean_i[λ_rv T (log p(y_i) − log q̃(y_i) − b_i) ∇ log p(y_i)],
    with ``baseline`` b (scalar or ``(N,)``, no gradient) 0 by default: eq. (18) verbatim.
    Any b_i independent of y_i keeps it unbiased (E ∇ log p = 0); a good one (the other
    samples' mean weight, or −log ζ̂ per condition) removes most of its variance.
    """
    lam_fw, lam_rv = sg(lambdas["fw"]), sg(lambdas["rv"])
    weight = sg(log_p_y - log_q_y)
    if baseline is not None:
        weight = weight - sg(baseline)
    return -lam_fw * jnp.mean(log_p_x) + lam_rv * temperature * jnp.mean(weight * log_p_y)


def theta_surrogate_pathwise(
    log_p_x: Array,
    log_p_y: Array,
    log_q_y: Array,
    lambdas: Mapping[str, Array],
    temperature: float = 1.0,
) -> Array:
    """Surrogate loss for θ with the reverse KL differentiated along the sampling path.

    Here y = g_θ(z) carries gradient: ``log_p_y`` is the log-density returned with the samples
    and ``log_q_y`` the EBM at those samples (ψ held fixed by the caller). Not in the paper.
    """
    lam_fw, lam_rv = sg(lambdas["fw"]), sg(lambdas["rv"])
    return -lam_fw * jnp.mean(log_p_x) + lam_rv * temperature * jnp.mean(log_p_y - log_q_y)


def psi_surrogate(
    log_q_x: Array,
    log_q_y: Array,
    log_zeta: Array,
    zeta_log_q: Array,
    zeta_log_p: Array,
    lambdas: Mapping[str, Array],
    temperature: float = 1.0,
) -> Array:
    """Surrogate loss for ψ whose gradient is eq. (15).

    ``log_q_x (n,)``, ``log_q_y (N,)`` and ``zeta_log_q (K,)`` depend on ψ; ``log_zeta`` (the
    M-sample estimate of eq. (12)) and ``zeta_log_p (K,)`` are constants. ``zeta_log_q`` /
    ``zeta_log_p`` are the samples whose importance weights carry ∇ψ ζ (eq. (14)): pass the
    reverse-KL samples y (eq. (15) as printed; the M samples then need a forward pass only)
    or the M samples themselves (eq. (14) as printed). For conditional models (B.6) pass
    ``log_zeta (n,)`` per condition and ``zeta_log_q``/``zeta_log_p`` of shape ``(n, J)``. The gradient is
      mean_i[−λ_prx ∇f(x_i)] − λ_rv T mean_i[∇f(y_i)] + c · mean_j[w_j ∇f(y_j)],
      c = (λ_rv T + λ_prx)/ζ + λ_u − λ_l,  w_j = exp(log q̃(y_j) − log p(y_j)),
    with f = log q̃ (for T = 1 and the y samples this is eq. (15) verbatim).
    """
    lam = {k: sg(v) for k, v in lambdas.items()}
    log_w = sg(zeta_log_q) - sg(zeta_log_p)
    # c · w_j = (λ_rv T + λ_prx) · exp(log w_j − log ζ) + (λ_u − λ_l) · w_j, with the ratio
    # formed in log space: exp(−log ζ) alone overflows float32 once log ζ < −88 (a condition
    # whose flow samples all land where q̃ is tiny), and inf · 0 would give NaN.
    # Per condition (B.6): log_zeta (n,) with samples (n, J) gives mean_i c_i ∇ζ(u_i); for a
    # scalar log_zeta and (K,) samples the outer mean is over a scalar.
    log_zeta = jnp.expand_dims(sg(log_zeta), -1)
    weights = (lam["rv"] * temperature + lam["prx"]) * jnp.exp(log_w - log_zeta) + (lam["zeta_u"] - lam["zeta_l"]) * jnp.exp(log_w)
    return (
        -lam["prx"] * jnp.mean(log_q_x)
        - lam["rv"] * temperature * jnp.mean(log_q_y)
        + jnp.mean(jnp.mean(weights * zeta_log_q, axis=-1))
    )
