"""SBI tasks of Appendix D.4: priors, simulators, exact reference posteriors, rejection ABC.

A task is a prior sampler and a simulator, both pure JAX:
  ``prior(key, n) -> β (n, param_dim)`` and ``simulator(key, β (n, param_dim)) -> u (n, obs_dim)``.
Built-in tasks also carry an exact posterior sampler ``posterior(key, u0 (obs_dim,), n) -> (n, param_dim)``.

Exact posteriors (derivations in the function docstrings):
  * two moons: the simulator is u = p + m(β) with noise p independent of β and m piecewise
    linear with |det ∂m/∂β| = 1 on each side of β₁ + β₂ = 0, so π(β | u₀) ∝ 1[β ∈ box] ·
    π_p(u₀ − m(β)); drawing p, solving m(β) = u₀ − p on a random branch and rejecting outside
    the box samples it exactly.
  * Gaussian mixture: π(u | β) = ½N(u; β, I) + ½N(u; β, 0.01 I) is symmetric in (u, β), so the
    posterior is ½N(β; u₀, I) + ½N(β; u₀, 0.01 I) truncated to the uniform prior's box:
    sample the untruncated mixture and reject outside the box.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PriorFn = Callable[[Array, int], Array]
SimulatorFn = Callable[[Array, Array], Array]
PosteriorFn = Callable[[Array, Array, int], Array]


@dataclasses.dataclass(frozen=True)
class SBITask:
    """A prior, a simulator and (optionally) an exact posterior sampler.

    Attributes:
      name: task name.
      param_dim: size of β.  obs_dim: size of u.
      prior: ``(key, n) -> (n, param_dim)``.  simulator: ``(key, β (n, param_dim)) -> (n, obs_dim)``.
      observation: default test observation u₀ ``(obs_dim,)`` (D.4).
      posterior: exact sampler ``(key, u0 (obs_dim,), n) -> (n, param_dim)`` or ``None``.
      prior_low / prior_high: box of a uniform prior (``None`` if not uniform); used by
        :func:`log_prior` and to pick the flow's spline bound.
      log_likelihood: ``(u (n, obs_dim), β (n, param_dim)) -> (n,)`` if known, else ``None``.
    """

    name: str
    param_dim: int
    obs_dim: int
    prior: PriorFn
    simulator: SimulatorFn
    observation: tuple[float, ...]
    posterior: Optional[PosteriorFn] = None
    prior_low: Optional[tuple[float, ...]] = None
    prior_high: Optional[tuple[float, ...]] = None
    log_likelihood: Optional[Callable[[Array, Array], Array]] = None


def uniform_prior(low: tuple[float, ...], high: tuple[float, ...]) -> PriorFn:
    """Sampler of U(box): ``(key, n) -> (n, d)``."""
    lo, hi = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)

    def prior(key: Array, n: int) -> Array:
        return jax.random.uniform(key, (n, lo.shape[0]), minval=lo, maxval=hi)

    return prior


def _in_box(beta: Array, low, high) -> Array:
    lo, hi = jnp.asarray(low, beta.dtype), jnp.asarray(high, beta.dtype)
    return jnp.all((beta >= lo) & (beta <= hi), axis=-1)


# -- two moons -------------------------------------------------------------------------
TWO_MOONS_R_MEAN, TWO_MOONS_R_STD = 0.1, 0.01
_S2 = math.sqrt(2.0)


def _two_moons_noise(key: Array, n: int) -> Array:
    """p = (r cos α + 0.25, r sin α), α ~ U(−π/2, π/2), r ~ N(0.1, 0.01²): ``(n, 2)``."""
    k_a, k_r = jax.random.split(key)
    a = jax.random.uniform(k_a, (n,), minval=-math.pi / 2, maxval=math.pi / 2)
    r = TWO_MOONS_R_MEAN + TWO_MOONS_R_STD * jax.random.normal(k_r, (n,))
    return jnp.stack([r * jnp.cos(a) + 0.25, r * jnp.sin(a)], axis=-1)


def two_moons_shift(beta: Array) -> Array:
    """m(β) = (−|β₁ + β₂|/√2, (−β₁ + β₂)/√2): ``(n, 2) -> (n, 2)``."""
    return jnp.stack([-jnp.abs(beta[:, 0] + beta[:, 1]) / _S2, (-beta[:, 0] + beta[:, 1]) / _S2], axis=-1)


def two_moons_simulator(key: Array, beta: Array) -> Array:
    """D.4 two moons: u = p + m(β). ``β (n, 2) -> u (n, 2)``."""
    return _two_moons_noise(key, beta.shape[0]) + two_moons_shift(beta)


def two_moons_log_likelihood(u: Array, beta: Array) -> Array:
    """log π(u | β) in closed form: with q = u − m(β) − (0.25, 0) in polar form (ρ, φ),
    π = N(ρ; 0.1, 0.01²) · (1/π) · 1[|φ| < π/2] / ρ (the Jacobian of polar coordinates;
    the mass of r < 0, ten standard deviations away, is neglected). ``(n, 2), (n, 2) -> (n,)``."""
    q = u - two_moons_shift(beta) - jnp.array([0.25, 0.0], u.dtype)
    rho = jnp.linalg.norm(q, axis=-1)
    log_n = -0.5 * ((rho - TWO_MOONS_R_MEAN) / TWO_MOONS_R_STD) ** 2 - math.log(TWO_MOONS_R_STD * math.sqrt(2 * math.pi))
    val = log_n - math.log(math.pi) - jnp.log(jnp.maximum(rho, 1e-30))
    return jnp.where(q[:, 0] > 0, val, -jnp.inf)


def two_moons_posterior_proposal(key: Array, u0: Array, n: int) -> tuple[Array, Array]:
    """``n`` proposals of the exact two-moons posterior and whether each is accepted.

    Draw the noise p, set m = u₀ − p, solve m(β) = m on a random branch s = sign(β₁ + β₂):
    β₁ + β₂ = −√2 m₁ s, β₂ − β₁ = √2 m₂. Each branch is linear with |det| = 1, so accepted
    proposals (m₁ ≤ 0 and β in the prior box) are exact posterior draws.
    Returns ``(β (n, 2), accepted (n,) bool)``.
    """
    k_p, k_s = jax.random.split(key)
    m = u0[None, :] - _two_moons_noise(k_p, n)
    s = jnp.where(jax.random.bernoulli(k_s, 0.5, (n,)), 1.0, -1.0)
    total = -_S2 * m[:, 0] * s
    diff = _S2 * m[:, 1]
    beta = jnp.stack([(total - diff) / 2, (total + diff) / 2], axis=-1)
    ok = (m[:, 0] <= 0) & _in_box(beta, (-1.0, -1.0), (1.0, 1.0))
    return beta, ok


# -- Gaussian mixture --------------------------------------------------------------------
def gaussian_mixture_simulator(key: Array, beta: Array) -> Array:
    """D.4: u ~ ½N(β, I) + ½N(β, 0.01 I). ``β (n, 2) -> u (n, 2)``."""
    k_c, k_z = jax.random.split(key)
    scale = jnp.where(jax.random.bernoulli(k_c, 0.5, (beta.shape[0], 1)), 1.0, 0.1)
    return beta + scale * jax.random.normal(k_z, beta.shape)


def gaussian_mixture_log_likelihood(u: Array, beta: Array) -> Array:
    """log[½N(u; β, I) + ½N(u; β, 0.01 I)]: ``(n, d), (n, d) -> (n,)``."""
    d = u.shape[-1]
    sq = jnp.sum((u - beta) ** 2, axis=-1)
    log_c = -0.5 * d * math.log(2 * math.pi)
    wide = log_c - 0.5 * sq
    narrow = log_c - 0.5 * sq / 0.01 - d * math.log(0.1)
    return jnp.logaddexp(wide, narrow) - math.log(2.0)


def gaussian_mixture_posterior_proposal(low, high):
    """Proposal of the exact truncated-mixture posterior: ``(key, u0, n) -> (β, accepted)``."""

    def proposal(key: Array, u0: Array, n: int) -> tuple[Array, Array]:
        beta = gaussian_mixture_simulator(key, jnp.broadcast_to(u0, (n, u0.shape[0])))
        return beta, _in_box(beta, low, high)

    return proposal


# -- rejection loops (host side) ----------------------------------------------------------
def _collect(draw: Callable[[Array, int], tuple[Array, Array]], key: Array, num: int, batch: int, max_draws: int, what: str) -> np.ndarray:
    """Call ``draw(key, batch) -> (x, accepted)`` until ``num`` accepted rows; keep the first ``num``."""
    out, have, drawn = [], 0, 0
    draw = jax.jit(draw, static_argnums=1)
    while have < num:
        if drawn >= max_draws:
            raise RuntimeError(f"{what}: only {have} of {num} samples accepted after {drawn} draws; loosen the tolerance")
        key, sub = jax.random.split(key)
        x, ok = draw(sub, batch)
        x, ok = np.asarray(x), np.asarray(ok)
        out.append(x[ok])
        have += int(ok.sum())
        drawn += batch
    return np.concatenate(out)[:num]


def exact_posterior_sampler(proposal) -> PosteriorFn:
    """Wrap a ``(key, u0, n) -> (β, accepted)`` proposal into a sampler returning ``(n, d)`` NumPy."""

    def sample(key: Array, u0, num: int) -> np.ndarray:
        u0 = jnp.asarray(u0, jnp.float32).reshape(-1)
        return _collect(lambda k, b: proposal(k, u0, b), key, num, max(4 * num, 4096), 10**8, "exact posterior")

    return sample


def rejection_abc(
    task: SBITask,
    key: Array,
    observation,
    num: int = 5000,
    tolerance: float = 0.05,
    batch: int = 100_000,
    max_simulations: int = 10**8,
) -> np.ndarray:
    """D.4's reference protocol: draw β from the prior, simulate, keep the first ``num`` with
    ‖u − u₀‖₂ < ``tolerance``. Returns ``(num, param_dim)``. Approximate: the result is the
    posterior given u within the tolerance ball, which tends to π(β | u₀) as it shrinks. D.4
    leaves the tolerance open; the built-in tasks default to exact samplers instead
    (docs/decisions.md, section 8)."""
    u0 = jnp.asarray(validate_observation(task, observation))

    def draw(key: Array, n: int):
        k_p, k_s = jax.random.split(key)
        beta = task.prior(k_p, n)
        u = task.simulator(k_s, beta)
        return beta, jnp.linalg.norm(u - u0, axis=-1) < tolerance

    return _collect(draw, key, num, batch, max_simulations, f"rejection ABC on {task.name}")


# -- the registry -------------------------------------------------------------------------
def _uniform_task(name, low, high, simulator, observation, proposal, log_lik) -> SBITask:
    return SBITask(
        name=name,
        param_dim=len(low),
        obs_dim=len(observation),
        prior=uniform_prior(low, high),
        simulator=simulator,
        observation=tuple(observation),
        posterior=exact_posterior_sampler(proposal),
        prior_low=tuple(low),
        prior_high=tuple(high),
        log_likelihood=log_lik,
    )


def _two_moons() -> SBITask:
    return _uniform_task(
        "two_moons", (-1.0, -1.0), (1.0, 1.0), two_moons_simulator, (0.0, 0.0),
        two_moons_posterior_proposal, two_moons_log_likelihood,
    )


def _gaussian_mixture(name: str, low, high) -> SBITask:
    return _uniform_task(
        name, low, high, gaussian_mixture_simulator, (0.75, 0.75),
        gaussian_mixture_posterior_proposal(low, high), gaussian_mixture_log_likelihood,
    )


TASKS: dict[str, Callable[[], SBITask]] = {
    "two_moons": _two_moons,
    # D.4: the paper's prior U([0.5, 1]²)
    "gaussian_mixture": lambda: _gaussian_mixture("gaussian_mixture", (0.5, 0.5), (1.0, 1.0)),
    # the prior of the SBI benchmark (Lueckmann et al., 2021): U([-10, 10]²)
    "gaussian_mixture_wide": lambda: _gaussian_mixture("gaussian_mixture_wide", (-10.0, -10.0), (10.0, 10.0)),
}


def get_task(name: str) -> SBITask:
    """The built-in task ``name``; ``ValueError`` naming the choices if unknown."""
    if name not in TASKS:
        raise ValueError(f"unknown SBI task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]()


def log_prior(task: SBITask, beta: Array) -> Array:
    """log density of a uniform prior box (−inf outside): ``(n, d) -> (n,)``."""
    inside = in_prior(task, beta)  # raises for a task without a box
    return jnp.where(inside, -math.log(float(np.prod(np.subtract(task.prior_high, task.prior_low)))), -jnp.inf)


def in_prior(task: SBITask, beta: Array) -> Array:
    """Whether each β lies in the task's uniform prior box: ``(..., d) -> (...)`` booleans."""
    if task.prior_low is None or task.prior_high is None:
        raise ValueError(f"task {task.name!r} has no uniform prior box")
    return _in_box(beta, task.prior_low, task.prior_high)


# -- user tasks and validation ------------------------------------------------------------
def user_task(
    prior: PriorFn,
    simulator: SimulatorFn,
    observation,
    name: str = "user",
    posterior: Optional[PosteriorFn] = None,
    key: Optional[Array] = None,
) -> SBITask:
    """A task from a user's pure-JAX ``prior(key, n)`` and ``simulator(key, β)``.

    Both are called once on 8 draws to learn the dimensions and check the output
    (:func:`validate_task`), before any training. ``observation`` is u₀ ``(obs_dim,)``.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    k_p, k_s = jax.random.split(key)
    beta = _checked_array(prior(k_p, 8), "prior", 8)
    u = _checked_array(simulator(k_s, jnp.asarray(beta)), "simulator", 8)
    task = SBITask(name, beta.shape[1], u.shape[1], prior, simulator, tuple(float(v) for v in np.ravel(observation)), posterior)
    validate_observation(task, observation)
    return task


def _checked_array(x, what: str, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{what} must return shape (n, dim) for n={n} draws, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} must return floats, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} returned {int(np.size(arr) - np.isfinite(arr).sum())} NaN or infinite values")
    return arr


def validate_task(task: SBITask, key: Optional[Array] = None, n: int = 64) -> None:
    """Run the prior and simulator on ``n`` draws; ``ValueError`` on a wrong shape or NaN/inf."""
    key = jax.random.PRNGKey(0) if key is None else key
    k_p, k_s = jax.random.split(key)
    beta = _checked_array(jax.jit(task.prior, static_argnums=1)(k_p, n), f"prior of task {task.name!r}", n)
    if beta.shape[1] != task.param_dim:
        raise ValueError(f"prior of task {task.name!r} returns dim {beta.shape[1]}, expected {task.param_dim}")
    u = _checked_array(jax.jit(task.simulator)(k_s, jnp.asarray(beta)), f"simulator of task {task.name!r}", n)
    if u.shape[1] != task.obs_dim:
        raise ValueError(f"simulator of task {task.name!r} returns dim {u.shape[1]}, expected {task.obs_dim}")


def validate_observation(task: SBITask, observation) -> np.ndarray:
    """u₀ as a float32 ``(obs_dim,)`` array; ``ValueError`` on a wrong size or NaN/inf."""
    u0 = np.asarray(observation, np.float32).reshape(-1)
    if u0.shape[0] != task.obs_dim:
        raise ValueError(f"observation has {u0.shape[0]} values, task {task.name!r} has obs_dim={task.obs_dim}")
    if not np.all(np.isfinite(u0)):
        raise ValueError("observation contains NaN or infinite values")
    return u0


def simulate_dataset(task: SBITask, key: Array, num: int) -> tuple[np.ndarray, np.ndarray]:
    """``num`` simulations: ``(β (num, param_dim), u (num, obs_dim))`` float32, checked finite."""
    if num < 2:
        raise ValueError(f"num_simulations must be >= 2, got {num}")
    validate_task(task)
    k_p, k_s = jax.random.split(key)
    beta = jnp.asarray(jax.jit(task.prior, static_argnums=1)(k_p, num), jnp.float32)
    u = jnp.asarray(jax.jit(task.simulator)(k_s, beta), jnp.float32)
    beta = _checked_array(beta, f"prior of task {task.name!r}", num)
    u = _checked_array(u, f"simulator of task {task.name!r}", num)
    return beta, u


def load_pairs(path: str, param_dim: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """A user's simulations from a file: ``.npz`` with arrays ``beta`` and ``u``, or a ``.npy`` /
    ``.csv`` matrix whose first ``param_dim`` columns are β and the rest u (``param_dim``
    required then). Returns float32 ``(β (n, d), u (n, k))``; ``ValueError`` on bad content."""
    if path.endswith(".npz"):
        with np.load(path) as z:
            if "beta" not in z or "u" not in z:
                raise ValueError(f"{path} must hold arrays 'beta' and 'u', found {sorted(z.files)}")
            beta, u = z["beta"], z["u"]
    else:
        if param_dim is None:
            raise ValueError("param_dim is needed to split a (β, u) matrix into its columns")
        mat = np.load(path) if path.endswith(".npy") else np.loadtxt(path, delimiter=",", ndmin=2)
        if mat.ndim != 2 or mat.shape[1] <= param_dim:
            raise ValueError(f"{path} must be a matrix with more than {param_dim} columns, got shape {mat.shape}")
        beta, u = mat[:, :param_dim], mat[:, param_dim:]
    beta = _checked_array(np.asarray(beta, np.float32), "beta", len(beta))
    u = _checked_array(np.asarray(u, np.float32), "u", len(beta))
    return beta, u
