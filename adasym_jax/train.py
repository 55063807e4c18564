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
from adasym_jax.zeta_sources import Samples, ZetaSource, concat_context, zeta_source

Array = jax.Array
sg = jax.lax.stop_gradient


def _apply_updates(tx: optax.GradientTransformation, grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def make_dual_step(config: TrainConfig, flow: nn.Module, ebm: nn.Module, source: Optional[ZetaSource] = None) -> StepFn:
    """Algorithm 3 for the Lagrangian (11), or P-W when ``config.method == "weighted"``.

    Per step: the ζ source (``source``, default :func:`~adasym_jax.zeta_sources.zeta_source`
    of ``config``: M fresh samples, K per condition (B.6) or D.3's cache) gives the ζ samples
    and the reverse-KL samples y, none with gradient; a forward pass of the EBM on the ζ
    samples gives log ζ̂ (eq. (12); per condition under B.6) and one spectral-norm power
    iteration. ψ descends :func:`~adasym_jax.objective.psi_surrogate` (eq. (15)); θ descends
    the score-function surrogate (eq. (18)) or the pathwise one; λ ascends eq. (19) at the
    closed-form ε, δ and is projected by :func:`~adasym_jax.objective.project_multipliers`.
    """
    draw_samples = zeta_source(config, flow) if source is None else source
    T = config.temperature

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        data = as_batch(batch)
        draw = draw_samples(state, data)
        theta, psi, lam = state.flow_params, state.ebm_params, state.lambdas
        log_zeta, stats = zeta_and_power_iteration(ebm, psi, state.ebm_stats, draw.zeta, draw.num_conditions)
        ebm_vars = {"params": psi, "spectral": stats}
        g_psi, log_q_x, log_q_y = psi_gradient(config, ebm, ebm_vars, lam, log_zeta, data, draw.reverse, draw.zeta)
        g_theta, log_p_x, log_p_y = theta_gradient(
            config, flow, ebm, theta, ebm_vars, lam, data, draw.reverse, log_q_y, draw.key_y, log_zeta_y=log_zeta
        )
        values = obj.constraint_values(log_p_x, log_q_x, log_p_y, log_q_y, log_zeta, T)
        return primal_dual_update(config, state, draw.key, g_theta, g_psi, stats, values, zeta_metrics(log_zeta, values))

    return step


def zeta_metrics(log_zeta: Array, values: dict) -> dict[str, Array]:
    """The step's ζ metrics: ``log_zeta`` (scalar log ζ̂; under B.6 the mean of log ζ̂(u_i),
    with ``zeta_mean`` = mean_i ζ̂(u_i), the constraint's value, and ``log_zeta_spread``,
    the standard deviation of log ζ̂(u_i) over the batch's conditions)."""
    if jnp.ndim(log_zeta) == 0:
        return {"log_zeta": log_zeta}
    return {"log_zeta": jnp.mean(log_zeta), "zeta_mean": values["zeta"], "log_zeta_spread": jnp.std(log_zeta)}


def zeta_and_power_iteration(
    ebm: nn.Module, psi, ebm_stats, zeta: Samples, num_conditions: Optional[int] = None
) -> tuple[Array, dict]:
    """log ζ̂ (Algorithm 2, eq. (12)) from the ζ samples ``zeta`` (``points (M, dim)``,
    ``context``, ``log_p (M,)``), by a forward pass of the EBM that also runs one spectral-norm
    power iteration. Returns ``(log_zeta, new spectral statistics)``; log ζ̂ carries no
    gradient. With ``num_conditions = n`` the samples are n consecutive groups, one per
    condition (B.6), and ``log_zeta`` is ``(n,)``, one estimate per group; otherwise a scalar."""
    log_q_m, new_vars = ebm.apply(
        {"params": psi, "spectral": ebm_stats}, zeta.points, zeta.context, update_stats=True, mutable=["spectral"]
    )
    shape = (-1,) if num_conditions is None else (num_conditions, -1)
    return obj.log_zeta_estimate(sg(log_q_m).reshape(shape), sg(zeta.log_p).reshape(shape)), new_vars["spectral"]


def psi_gradient(
    config: TrainConfig,
    ebm: nn.Module,
    ebm_vars,
    lambdas: dict,
    log_zeta: Array,
    data: Batch,
    reverse: Samples,
    zeta: Samples,
):
    """∇ψ of the ψ surrogate (eq. (15)) at ``ebm_vars`` (params and spectral statistics).

    ``data``: ``x (n, dim)`` with its context; ``reverse``: the reverse-KL samples y
    ``(N, dim)`` with context and log p_θ(y); ``zeta``: the ζ samples, which carry ∇ψ ζ when
    ``config.zeta_grad == "importance"`` (eq. (14)); otherwise the y samples do. A
    per-condition ``log_zeta (n,)`` (B.6) groups those samples by condition: row i of the
    reshaped ``(n, J)`` samples carries ∇ψ ζ(u_i). Returns ``(g_psi, log_q_x (n,),
    log_q_y (N,))``, the log-densities without gradient.
    """
    x, ctx = data
    n = x.shape[0]
    group = log_zeta.shape + (-1,)

    def psi_loss(psi_):
        v = {"params": psi_, "spectral": ebm_vars["spectral"]}
        log_q = ebm.apply(v, jnp.concatenate([x, reverse.points]), concat_context(ctx, reverse.context))
        log_q_x, log_q_y = log_q[:n], log_q[n:]
        if config.zeta_grad == "batch":
            zq, zp = log_q_y, reverse.log_p
        else:
            zq, zp = ebm.apply(v, zeta.points, zeta.context), zeta.log_p
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
    data: Batch,
    reverse: Samples,
    log_q_y: Array,
    key_y: Array,
    *,
    log_zeta_y: Optional[Array] = None,
):
    """∇θ of the θ surrogate (eq. (18), or pathwise when ``config.reverse_grad == "pathwise"``).

    ``data``: ``x (n, dim)`` with its context; ``reverse``: the reverse-KL samples y
    ``(N, dim)`` drawn with ``key_y`` (no gradient), their context and log p_θ(y) as drawn;
    ``log_q_y (N,)`` the EBM there. The pathwise form redraws y from ``key_y`` along θ's
    sampling path, with ψ (``ebm_vars``) held fixed. The score form subtracts
    :func:`score_baseline` from its weights, built from ``reverse.log_p`` and ``log_zeta_y``
    (scalar or ``(N,)``). Returns ``(g_theta, log_p_x (n,), log_p_y (N,))``, the
    log-densities without gradient.
    """
    x, ctx = data
    y, ctx_y = reverse.points, reverse.context
    n, n_rev, T = x.shape[0], y.shape[0], config.temperature
    baseline = None
    if config.reverse_grad == "score" and theta_baseline_mode(config) != "none":
        baseline = score_baseline(config, reverse.log_p, log_q_y, log_zeta_y)

    def theta_loss(theta_):
        if config.reverse_grad == "score":
            log_p = flow.apply({"params": theta_}, jnp.concatenate([x, y]), concat_context(ctx, ctx_y), method="log_prob")
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
    the B.7 multipliers, :func:`~adasym_jax.objective.project_multipliers`); P-W keeps them. Returns the new state (with ``key`` and the new
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
        new_lam = obj.project_multipliers(new_lam, config.negative_nll, config.lambda_floor)
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
    ``metrics`` is a dict of scalars. With D.3's cached ζ (``config.zeta_refresh_every`` > 1)
    the step reads ``state.zeta_cache`` and never redraws it: the runner's chunks do
    (:class:`adasym_jax.runner.Trainer`); a loop of your own calls
    :func:`adasym_jax.zeta_sources.refresh_zeta_cache` every K steps, or keeps the samples
    ``init_state`` drew. ``jax.jit(step)`` compiles it and
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
