"""WGAN-GP (Gulrajani et al., 2017) with the flow's sampler as generator and the residual EBM
as critic (Section 5.1, Appendix D.1): :func:`make_wgan_step`, picked by
``TrainConfig(method="wgan")`` through :func:`adasym_jax.train.make_train_step`.

A step module only (the same :class:`~adasym_jax.state.TrainState` as every method); the P-W
grid driver is in :mod:`adasym_jax.baselines`.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from adasym_jax.batch import StepFn, as_batch
from adasym_jax.config import TrainConfig
from adasym_jax.state import TrainState, adam

Array = jax.Array
sg = jax.lax.stop_gradient


def _gradient_penalty(critic, x_hat: Array, ctx: Optional[Array]) -> Array:
    """mean_i (‖∇ₓ critic(x̂_i)‖ − 1)² over rows ``x_hat (n, dim)`` (rows are independent)."""
    grads = jax.grad(lambda z: jnp.sum(critic(z, ctx)))(x_hat)
    norms = jnp.sqrt(jnp.sum(grads**2, axis=-1) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2)


def make_wgan_step(config: TrainConfig, flow: nn.Module, ebm: nn.Module) -> StepFn:
    """WGAN-GP step: ``step(state, batch) -> (state, metrics)``, same state as every method.

    Per step, ``config.critic_steps`` critic updates of ψ (Adam, ``lr_ebm``) on
    ``mean f_ψ(y) − mean f_ψ(x) + gp_weight · mean(‖∇f_ψ(x̂)‖ − 1)²`` with fresh flow samples
    y and x̂ uniform interpolates of x and y; then one generator update of θ (Adam,
    ``lr_flow``) on ``−mean f_ψ(y_θ)``, differentiated along the sampling path y_θ = g_θ(z).
    The critic is the EBM, so f_ψ is high on data (an unnormalized log-density). One
    spectral-norm power iteration runs per critic update. λ is left untouched.
    ``fw_nll`` (train NLL of p_θ) is reported for monitoring only; it does not drive θ.
    """
    flow_tx, ebm_tx = adam(config.lr_flow, config), adam(config.lr_ebm, config)

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        x, ctx = as_batch(batch)
        n = x.shape[0]
        key, k_critic, k_gen = jax.random.split(state.key, 3)
        theta = state.flow_params

        def critic_update(carry, k):
            psi, stats, opt = carry
            k_y, k_eps = jax.random.split(k)
            y = sg(flow.apply({"params": theta}, k_y, n, ctx, method="sample"))
            _, new_vars = ebm.apply(
                {"params": psi, "spectral": stats}, y, ctx, update_stats=True, mutable=["spectral"]
            )
            stats = new_vars["spectral"]
            eps = jax.random.uniform(k_eps, (n, 1))
            x_hat = eps * x + (1.0 - eps) * y

            def loss(psi_):
                critic = lambda z, c: ebm.apply({"params": psi_, "spectral": stats}, z, c)  # noqa: E731
                f = critic(jnp.concatenate([x, y]), None if ctx is None else jnp.concatenate([ctx, ctx]))
                w_dist = jnp.mean(f[:n]) - jnp.mean(f[n:])
                gp = _gradient_penalty(critic, x_hat, ctx)
                return -w_dist + config.gp_weight * gp, (w_dist, gp)

            (_, (w_dist, gp)), g = jax.value_and_grad(loss, has_aux=True)(psi)
            updates, opt = ebm_tx.update(g, opt, psi)
            psi = optax.apply_updates(psi, updates)
            return (psi, stats, opt), (w_dist, gp, optax.tree.norm(g))

        keys = jax.random.split(k_critic, config.critic_steps)
        (psi, stats, ebm_opt), (w_dists, gps, g_norms) = jax.lax.scan(
            critic_update, (state.ebm_params, state.ebm_stats, state.ebm_opt), keys
        )

        def gen_loss(theta_):
            y, _ = flow.apply({"params": theta_}, k_gen, n, ctx, method="sample_and_log_prob")
            return -jnp.mean(ebm.apply({"params": psi, "spectral": stats}, y, ctx))

        g_loss, g_theta = jax.value_and_grad(gen_loss)(theta)
        updates, flow_opt = flow_tx.update(g_theta, state.flow_opt, theta)
        new_theta = optax.apply_updates(theta, updates)
        train_nll = -jnp.mean(flow.apply({"params": theta}, x, ctx, method="log_prob"))

        metrics = {
            "fw_nll": train_nll,
            "wasserstein": w_dists[-1],
            "gradient_penalty": gps[-1],
            "generator_loss": g_loss,
            "grad_norm_flow": optax.tree.norm(g_theta),
            "grad_norm_ebm": g_norms[-1],
        }
        new_state = state.replace(
            step=state.step + 1,
            key=key,
            flow_params=new_theta,
            ebm_params=psi,
            ebm_stats=stats,
            flow_opt=flow_opt,
            ebm_opt=ebm_opt,
        )
        return new_state, metrics

    return step
