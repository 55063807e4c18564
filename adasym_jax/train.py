"""Pure train steps: ``step(state, batch) -> (state, metrics)``, jit-able and vmappable.

:func:`make_train_step` returns the step of ``config.method``: the dual gradient
descent–ascent of Algorithm 3 (``adasym``), its fixed-weight penalty twin (``weighted``,
eq. (P-W)), maximum likelihood (``nf``) or WGAN-GP (``wgan``, in :mod:`adasym_jax.wgan`).
All share :class:`~adasym_jax.state.TrainState`, so one runner serves every method.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from adasym_jax import objective as obj
from adasym_jax.batch import Batch, StepFn, as_batch  # noqa: F401  (re-exported)
from adasym_jax.config import TrainConfig
from adasym_jax.state import TrainState, adam, dual_optimizer

Array = jax.Array
sg = jax.lax.stop_gradient
def _take_rows(context: Optional[Array], key: Array, num: int, n: int) -> Optional[Array]:
    """Conditions for ``num`` flow samples: the batch's own rows if ``num == n``, else drawn
    uniformly from the batch (so ζ̂ estimates the mean partition function over conditions)."""
    if context is None:
        return None
    if num == n:
        return context
    return context[jax.random.randint(key, (num,), 0, n)]


def _concat(a: Optional[Array], b: Optional[Array]) -> Optional[Array]:
    return None if a is None else jnp.concatenate([a, b], axis=0)


def _apply_updates(tx: optax.GradientTransformation, grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def make_dual_step(config: TrainConfig, flow: nn.Module, ebm: nn.Module) -> StepFn:
    """Algorithm 3 for the Lagrangian (11), or P-W when ``config.method == "weighted"``.

    Per step: M flow samples (no gradient) and a forward pass of the EBM give log ζ̂ (eq. (12))
    and one spectral-norm power iteration; N flow samples y give the reverse KL. ψ descends
    :func:`~adasym_jax.objective.psi_surrogate` (eq. (15)); θ descends the score-function
    surrogate (eq. (18)) or the pathwise one; λ ascends eq. (19) at the closed-form ε, δ and is
    projected onto λ ≥ 0 (λ ≥ ``lambda_floor`` for B.7 multipliers).
    """
    T = config.temperature

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        x, ctx = as_batch(batch)
        n = x.shape[0]
        n_rev = config.num_reverse_samples or n
        m = config.num_zeta_samples
        key, k_y, k_m, k_cy, k_cm = jax.random.split(state.key, 5)
        ctx_y = _take_rows(ctx, k_cy, n_rev, n)
        ctx_m = _take_rows(ctx, k_cm, m, n)
        theta, psi, lam = state.flow_params, state.ebm_params, state.lambdas

        # The M ζ samples and the N reverse-KL samples y (neither carries gradient in the
        # paper's estimator) in one pass of the flow: the same draws as two
        # sample_and_log_prob calls with k_m and k_y.
        z = jnp.concatenate([flow.apply({}, k_m, m, method="base_sample"), flow.apply({}, k_y, n_rev, method="base_sample")])
        samples, log_p_s = flow.apply({"params": theta}, z, _concat(ctx_m, ctx_y), method="push_base")
        samples, log_p_s = sg(samples), sg(log_p_s)
        y_m, log_p_m, y, log_p_y_s = samples[:m], log_p_s[:m], samples[m:], log_p_s[m:]

        log_zeta, stats = zeta_and_power_iteration(ebm, psi, state.ebm_stats, y_m, ctx_m, log_p_m)
        g_psi, log_q_x, log_q_y = psi_gradient(
            config, ebm, {"params": psi, "spectral": stats}, lam, log_zeta, x, ctx, y, ctx_y, log_p_y_s, y_m, ctx_m, log_p_m
        )

        g_theta, log_p_x, log_p_y = theta_gradient(
            config, flow, ebm, theta, {"params": psi, "spectral": stats}, lam, x, ctx, y, ctx_y, log_q_y, k_y,
            log_p_y_sampled=log_p_y_s, log_zeta_y=log_zeta,
        )

        values = obj.constraint_values(log_p_x, log_q_x, log_p_y, log_q_y, log_zeta, T)
        return primal_dual_update(config, state, key, g_theta, g_psi, stats, values, {"log_zeta": log_zeta})

    return step


def zeta_and_power_iteration(
    ebm: nn.Module,
    psi,
    ebm_stats,
    y_m: Array,
    ctx_m: Optional[Array],
    log_p_m: Array,
    num_conditions: Optional[int] = None,
) -> tuple[Array, dict]:
    """log ζ̂ (Algorithm 2, eq. (12)) from ``M`` flow samples ``y_m (M, dim)`` with their
    ``log_p_m (M,)``, by a forward pass of the EBM that also runs one spectral-norm power
    iteration. Returns ``(log_zeta, new spectral statistics)``; log ζ̂ carries no gradient.
    With ``num_conditions = n`` the samples are n consecutive groups, one per condition (B.6),
    and ``log_zeta`` is ``(n,)``, one estimate per group; otherwise it is a scalar."""
    log_q_m, new_vars = ebm.apply({"params": psi, "spectral": ebm_stats}, y_m, ctx_m, update_stats=True, mutable=["spectral"])
    shape = (-1,) if num_conditions is None else (num_conditions, -1)
    return obj.log_zeta_estimate(sg(log_q_m).reshape(shape), sg(log_p_m).reshape(shape)), new_vars["spectral"]


def psi_gradient(
    config: TrainConfig,
    ebm: nn.Module,
    ebm_vars,
    lambdas: dict,
    log_zeta: Array,
    x: Array,
    ctx: Optional[Array],
    y: Array,
    ctx_y: Optional[Array],
    log_p_y: Array,
    y_m: Array,
    ctx_m: Optional[Array],
    log_p_m: Array,
):
    """∇ψ of the ψ surrogate (eq. (15)) at ``ebm_vars`` (params and spectral statistics).

    ``x (n, dim)`` data with ``ctx``; ``y (N, dim)`` reverse-KL samples with ``ctx_y`` and
    ``log_p_y (N,)``; ``y_m (M, dim)``, ``ctx_m``, ``log_p_m (M,)`` the ζ samples, which carry
    ∇ψ ζ when ``config.zeta_grad == "importance"`` (eq. (14)); otherwise the y samples do.
    A per-condition ``log_zeta (n,)`` (B.6) groups those samples by condition: row i of the
    reshaped ``(n, J)`` samples carries ∇ψ ζ(u_i). Returns ``(g_psi, log_q_x (n,),
    log_q_y (N,))``, the log-densities without gradient.
    """
    n = x.shape[0]
    group = log_zeta.shape + (-1,)

    def psi_loss(psi_):
        v = {"params": psi_, "spectral": ebm_vars["spectral"]}
        log_q = ebm.apply(v, jnp.concatenate([x, y]), _concat(ctx, ctx_y))
        log_q_x, log_q_y = log_q[:n], log_q[n:]
        if config.zeta_grad == "batch":
            zq, zp = log_q_y, log_p_y
        else:
            zq, zp = ebm.apply(v, y_m, ctx_m), log_p_m
        loss = obj.psi_surrogate(log_q_x, log_q_y, log_zeta, zq.reshape(group), zp.reshape(group), lambdas, config.temperature)
        return loss, (log_q_x, log_q_y)

    (_, (log_q_x, log_q_y)), g_psi = jax.value_and_grad(psi_loss, has_aux=True)(ebm_vars["params"])
    return g_psi, sg(log_q_x), sg(log_q_y)


def theta_baseline_mode(config: TrainConfig) -> str:
    """The θ-weight baseline ``config.theta_baseline`` resolves to: ``"auto"`` is ``"loo"``,
    conditional or not. Measured (``benchmarks/results/theta_variance.md``): on two moons (B.6)
    adding the per-condition log ζ̂(u_i) (4 samples per condition) before the leave-one-out
    mean cut the spread 6 % more near ζ's band but added 15 % where ζ̂ had drifted."""
    if config.theta_baseline == "auto":
        return "loo"
    return config.theta_baseline


def score_baseline(config: TrainConfig, log_p_y: Array, log_q_y: Array, log_zeta_y: Optional[Array]) -> Optional[Array]:
    """Baseline b subtracted from eq. (18)'s weight log p_θ(y_i) − log q̃_ψ(y_i) (no gradient).

    ``"loo"``: the leave-one-out mean of the other samples' weights; ``"log_zeta"``:
    −log ζ̂ (``log_zeta_y``: a scalar, or ``(N,)``, the estimate at each sample's condition,
    from the ζ samples, never from y_i itself), which turns the weight into the log-ratio
    log p_θ(y_i) − log q_ψ(y_i); ``"log_zeta_loo"``: both (−log ζ̂(u_i) plus the leave-one-out
    mean of the others' log-ratios); ``"none"``: ``None`` (eq. (18) verbatim). All are
    unbiased: b_i never depends on y_i.
    """
    mode = theta_baseline_mode(config)
    if mode == "none":
        return None
    w = sg(log_p_y - log_q_y)
    if mode == "loo":
        return obj.leave_one_out_mean(w)
    if log_zeta_y is None:
        raise ValueError(f"theta_baseline={mode!r} needs the step's log ζ̂ (log_zeta_y)")
    log_zeta_y = jnp.broadcast_to(sg(log_zeta_y), w.shape)
    if mode == "log_zeta":
        return -log_zeta_y
    return -log_zeta_y + obj.leave_one_out_mean(w + log_zeta_y)


def theta_gradient(
    config: TrainConfig,
    flow: nn.Module,
    ebm: nn.Module,
    theta,
    ebm_vars,
    lambdas: dict,
    x: Array,
    ctx: Optional[Array],
    y: Array,
    ctx_y: Optional[Array],
    log_q_y: Array,
    key_y: Array,
    *,
    log_p_y_sampled: Optional[Array] = None,
    log_zeta_y: Optional[Array] = None,
):
    """∇θ of the θ surrogate (eq. (18), or pathwise when ``config.reverse_grad == "pathwise"``).

    ``x (n, dim)`` data with ``ctx``; ``y (N, dim)`` the reverse-KL samples drawn with ``key_y``
    (no gradient) with ``ctx_y`` and ``log_q_y (N,)`` the EBM there. The pathwise form redraws y
    from ``key_y`` along θ's sampling path, with ψ (``ebm_vars``) held fixed. The score form
    subtracts :func:`score_baseline` from its weights, built from ``log_p_y_sampled (N,)``
    (log p_θ(y) returned with the samples) and ``log_zeta_y`` (scalar or ``(N,)``). Returns
    ``(g_theta, log_p_x (n,), log_p_y (N,))``, the log-densities without gradient.
    """
    n, n_rev, T = x.shape[0], y.shape[0], config.temperature
    baseline = None
    if config.reverse_grad == "score" and theta_baseline_mode(config) != "none":
        if log_p_y_sampled is None:
            log_p_y_sampled = flow.apply({"params": theta}, y, ctx_y, method="log_prob")
        baseline = score_baseline(config, log_p_y_sampled, log_q_y, log_zeta_y)

    def theta_loss(theta_):
        if config.reverse_grad == "score":
            log_p = flow.apply({"params": theta_}, jnp.concatenate([x, y]), _concat(ctx, ctx_y), method="log_prob")
            log_p_x, log_p_y = log_p[:n], log_p[n:]
            loss = obj.theta_surrogate_score(log_p_x, log_p_y, log_q_y, lambdas, T, baseline)
        else:
            log_p_x = flow.apply({"params": theta_}, x, ctx, method="log_prob")
            y_t, log_p_y = flow.apply({"params": theta_}, key_y, n_rev, ctx_y, method="sample_and_log_prob")
            log_q_yt = ebm.apply(jax.tree.map(sg, ebm_vars), y_t, ctx_y)
            loss = obj.theta_surrogate_pathwise(log_p_x, log_p_y, log_q_yt, lambdas, T)
        return loss, (log_p_x, log_p_y)

    (_, (log_p_x, log_p_y)), g_theta = jax.value_and_grad(theta_loss, has_aux=True)(theta)
    return g_theta, sg(log_p_x), sg(log_p_y)


def primal_dual_update(
    config: TrainConfig,
    state: TrainState,
    key: Array,
    g_theta,
    g_psi,
    ebm_stats,
    values: dict,
    extra_metrics: Optional[dict] = None,
) -> tuple[TrainState, dict]:
    """The update half of a dual step, shared by every variant of the dual method.

    Adam steps θ and ψ along ``g_theta``/``g_psi``; for ``method == "adasym"`` the multipliers
    ascend :func:`~adasym_jax.objective.dual_gradients` of the constraint ``values`` (dict with
    ``fw``, ``rv``, ``prx``, ``zeta``) and are projected onto λ ≥ 0 (λ ≥ ``lambda_floor`` for
    the B.7 multipliers); P-W keeps them. Returns the new state (with ``key`` and the new
    spectral statistics) and the step's scalar metrics (the λ reported are those used).
    """
    lam = state.lambdas
    new_theta, flow_opt = _apply_updates(adam(config.lr_flow, config), g_theta, state.flow_opt, state.flow_params)
    new_psi, ebm_opt = _apply_updates(adam(config.lr_ebm, config), g_psi, state.ebm_opt, state.ebm_params)
    new_lam, dual_opt = lam, state.dual_opt
    if config.method == "adasym":
        ascent = obj.dual_gradients(values, lam, config.eps_zeta, config.negative_nll)
        neg = jax.tree.map(lambda g: -g, ascent)
        new_lam, dual_opt = _apply_updates(dual_optimizer(config), neg, state.dual_opt, lam)
        new_lam = {k: jnp.maximum(v, _lambda_floor(config, k)) for k, v in new_lam.items()}
    metrics = {
        "fw_nll": values["fw"],
        "rv_kl": values["rv"],
        "prx_nll": values["prx"],
        "log_zeta": jnp.log(values["zeta"]),
        "lagrangian": obj.lagrangian(values, lam, config.eps_zeta, config.negative_nll),
        "grad_norm_flow": optax.tree.norm(g_theta),
        "grad_norm_ebm": optax.tree.norm(g_psi),
        **{f"lambda_{k}": v for k, v in lam.items()},
        **(extra_metrics or {}),
    }
    new_state = state.replace(
        step=state.step + 1,
        key=key,
        flow_params=new_theta,
        ebm_params=new_psi,
        ebm_stats=ebm_stats,
        lambdas=new_lam,
        flow_opt=flow_opt,
        ebm_opt=ebm_opt,
        dual_opt=dual_opt,
    )
    return new_state, metrics


def _lambda_floor(config: TrainConfig, name: str) -> float:
    if config.negative_nll and name in obj.NLL_CONSTRAINTS:
        return config.lambda_floor
    return 0.0


def make_mle_step(config: TrainConfig, flow: nn.Module, ebm: nn.Module) -> StepFn:
    """Maximum likelihood for the flow alone (the NF baseline); ψ and λ are left untouched."""
    flow_tx = adam(config.lr_flow, config)

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        x, ctx = as_batch(batch)

        def loss(theta_):
            return -jnp.mean(flow.apply({"params": theta_}, x, ctx, method="log_prob"))

        nll, g = jax.value_and_grad(loss)(state.flow_params)
        theta, flow_opt = _apply_updates(flow_tx, g, state.flow_opt, state.flow_params)
        metrics = {"fw_nll": nll, "grad_norm_flow": optax.tree.norm(g)}
        key, _ = jax.random.split(state.key)  # advance the stream like every other step
        return state.replace(step=state.step + 1, key=key, flow_params=theta, flow_opt=flow_opt), metrics

    return step


def make_train_step(config: TrainConfig, flow: nn.Module, ebm: nn.Module) -> StepFn:
    """The pure step for ``config.method``: ``step(state, batch) -> (state, metrics)``.

    ``batch`` is a :class:`Batch`, an ``(x, context)`` tuple or an array ``x (n, dim)``;
    ``metrics`` is a dict of scalars. ``jax.jit(step)`` compiles it and
    ``jax.vmap(step, in_axes=(0, None))`` runs many seeds on one batch.
    """
    if config.method in ("adasym", "weighted"):
        return make_dual_step(config, flow, ebm)
    if config.method == "nf":
        return make_mle_step(config, flow, ebm)
    if config.method == "wgan":
        from adasym_jax.wgan import make_wgan_step

        return make_wgan_step(config, flow, ebm)
    raise ValueError(f"unknown method {config.method!r}")
