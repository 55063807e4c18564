"""Experiment presets: the settings of each experiment of the paper (Appendix D), in one place.

Each function returns a :class:`Preset`: the :class:`~adasym_jax.config.TrainConfig` and the
run settings of the experiment (steps, data sizes, epochs, …) as a read-only mapping. The
command line (``adasym train`` demo, ``adasym latent``, ``adasym sbi``), the benchmarks and the
tests read them from here.

- :func:`gmm40` — D.1, the 40-component Gaussian mixture (the ``TrainConfig()`` defaults).
- :func:`density2d` — D.2, the five 2D densities.
- :func:`latent` — D.3, autoencoder latents: ``"celeba"`` (the paper's) or ``"digits"`` (sized
  for a laptop CPU; not in the paper).
- :func:`sbi` — D.4, simulation-based inference on two moons and the Gaussian mixture.
- :func:`demo` — the README demo (``adasym train`` without data).

Settings that Appendix D does not state are marked "not in D.x" where they are set; the
paper's ambiguities and our decisions are in ``docs/decisions.md``. This module imports only
:mod:`adasym_jax.config` (and, for a task given by name, :mod:`adasym_jax.sbi.tasks`).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Mapping

from adasym_jax.config import TrainConfig

LATENT_DATASETS = ("celeba", "digits")
SBI_METHODS = ("adasym", "nf")


@dataclasses.dataclass(frozen=True)
class Preset:
    """An experiment's ``config`` and its ``run`` settings (read-only; keys per experiment)."""

    name: str
    config: TrainConfig
    run: Mapping[str, Any]
    source: str

    def __post_init__(self):
        object.__setattr__(self, "run", types.MappingProxyType(dict(self.run)))

    def replace(self, **config_changes: Any) -> "Preset":
        """The same preset with ``config.replace(**config_changes)``."""
        return dataclasses.replace(self, config=self.config.replace(**config_changes))


def gmm40() -> Preset:
    """D.1: 800 training and 10,000 test points of the 40-component GMM (centres U(0, 1),
    std 0.05), 100,000 full-batch iterations. NSF 5 transforms × 8 bins, EBM 6 residual blocks
    × 64, M = 1000; LR θ 1e-3, ψ 1e-4, λ 1e-4, λ_ζ 1e-3; ε_ζ = 0.1; the B.7 form. P-W grid
    w ∈ {0.2, 0.5, 1, 2, 5}²; WGAN-GP coefficient 0.1 with LR 1e-5 for q_ψ / the critic and
    1e-3 or 1e-5 for p_θ / the generator. These are the ``TrainConfig()`` defaults."""
    return Preset(
        "gmm40",
        TrainConfig(),
        {
            "dataset": "gmm40",
            "num_train": 800,
            "num_test": 10_000,
            "steps": 100_000,
            "batch_size": None,  # full batch
            "pw_weights": (0.2, 0.5, 1.0, 2.0, 5.0),
            "wgan_lr_critic": 1e-5,
            "wgan_lr_generator": (1e-3, 1e-5),
            "wgan_gp_weight": 0.1,
        },
        "Appendix D.1",
    )


DENSITY2D_DATASETS = ("gmm_ring", "gmm_grid", "moons", "spiral", "rings")


def density2d() -> Preset:
    """D.2: 1000 training and 10,000 test points, 25,000 full-batch iterations; LR θ and NF
    1e-3, ψ 1e-4, λ 1e-4, λ_ζ 1e-3, ε_ζ = 0.1, M = 1000; the KL multipliers start at 0.01.
    The models are D.1's (D.2 does not restate them)."""
    return Preset(
        "density2d",
        TrainConfig(lambda_init=0.01),
        {
            "datasets": DENSITY2D_DATASETS,
            "num_train": 1000,
            "num_test": 10_000,
            "steps": 25_000,
            "batch_size": None,  # full batch
            "grid_pixels": 64,  # density maps on 64 × 64 pixels
        },
        "Appendix D.2",
    )


#: D.3 / C.2 for CelebA (64 × 64 × 3 images, 100-D latents).
_CELEBA_CONFIG = dict(
    method="adasym",
    num_transforms=6,
    num_bins=16,
    ebm_blocks=5,
    ebm_hidden=1024,
    temperature=0.01,
    num_zeta_samples=5000,
    batch_size=128,
    lr_flow=1e-3,
    lr_ebm=1e-6,
    lr_dual=1e-6,
    lr_dual_zeta=1e-4,
    eps_zeta=100.0,
)


def latent(dataset: str = "celeba") -> Preset:
    """D.3 (with the C.2 autoencoder), by ``dataset``:

    ``"celeba"``, the paper's: NSF 6 transforms × 16 bins; EBM 5 residual blocks × 1024;
    T = 0.01; ζ from 5000 samples drawn every 100 iterations; 40 epochs at batch 128; LR θ 1e-3,
    ψ 1e-6, λ 1e-6, λ_ζ 1e-4; ε_ζ = 100; a 100-D latent from an autoencoder trained 20 epochs at
    batch 128 with Adam LR 1e-3 (C.2). Not in D.3 and kept at the library defaults: the flow's
    conditioner width, λ init 0.01, the B.7 form, and the B.8 warm start's length (1000 Adam
    steps at LR 1e-3 on 1000 flow samples).

    ``"digits"``, scikit-learn's 8 × 8 digits (not in the paper), sized to finish in minutes on a
    laptop CPU: the same flow, temperature, learning rates and ε_ζ, but an EBM of 2 × 256, ζ from
    1000 samples (2000 for evaluation), a 16-D latent, and a warm start of 200 steps on 256
    samples (the CelebA EBM of
    5 × 1024 with 1000 warm-start steps took over 20 minutes for 2 epochs on two CPU cores).
    """
    if dataset not in LATENT_DATASETS:
        raise ValueError(f"unknown latent preset {dataset!r}; choose one of {', '.join(LATENT_DATASETS)}")
    run: dict[str, Any] = {
        "epochs": 40,
        "latent_dim": 100,
        "ae_epochs": 20,
        "ae_batch": 128,
        "ae_lr": 1e-3,
        "warm_start_steps": 1000,
        "warm_start_samples": 1000,
        "warm_start_lr": 1e-3,
        "zeta_every": 100,
    }
    config = TrainConfig(**_CELEBA_CONFIG)
    if dataset == "digits":
        config = config.replace(ebm_blocks=2, ebm_hidden=256, num_zeta_samples=1000, eval_zeta_samples=2000)
        run.update(latent_dim=16, warm_start_steps=200, warm_start_samples=256)
        return Preset("latent-digits", config, run, "Appendix D.3, scaled down for 8x8 digits (not in the paper)")
    return Preset("latent-celeba", config, run, "Appendix D.3 and C.2")


def sbi(task: Any, method: str = "adasym", **overrides: Any) -> Preset:
    """D.4 for ``task`` (an :class:`~adasym_jax.sbi.tasks.SBITask` or a built-in task name):
    flow of 4 transforms × 8 bins; FiLM EBM (two moons: 3 blocks × 128, the others: 6 × 64,
    2 FiLM layers); batch 1000; the B.7 form; LR θ 1e-4, ψ 1e-5, λ 1e-6, λ_ζ 1e-2; ε_ζ = 30;
    λ starts at 0.01; C2ST on 5000 reference and 5000 model samples; Langevin sampling of q_ψ
    with 2000 steps of size 1e-4. ``overrides`` are TrainConfig fields. Not in D.4 (library
    defaults): ``steps`` 2000, ``eval_every`` 200, ``num_simulations`` 1000."""
    if method not in SBI_METHODS:
        raise ValueError(f"unknown SBI method {method!r}; choose one of {', '.join(SBI_METHODS)}")
    if isinstance(task, str):
        from adasym_jax.sbi.tasks import get_task

        task = get_task(task)
    moons = task.name == "two_moons"
    config = TrainConfig(
        method=method,
        context_dim=task.obs_dim,
        num_transforms=4,
        num_bins=8,
        ebm_blocks=3 if moons else 6,
        ebm_hidden=128 if moons else 64,
        film_layers=2,
        batch_size=1000,
        negative_nll=True,
        lr_flow=1e-4,
        lr_ebm=1e-5,
        lr_dual=1e-6,
        lr_dual_zeta=1e-2,
        eps_zeta=30.0,
        lambda_init=0.01,
        zeta_per_condition=SBI_ZETA_PER_CONDITION if method == "adasym" else 0,
    ).replace(**overrides)
    run = {
        "task": task.name,
        "num_simulations": SBI_RUN["num_simulations"],
        "steps": SBI_RUN["steps"],
        "eval_every": SBI_RUN["eval_every"],
        "num_posterior_samples": SBI_RUN["num_posterior_samples"],
        "langevin_steps": SBI_RUN["langevin_steps"],
        "langevin_step_size": SBI_RUN["langevin_step_size"],
    }
    return Preset(f"sbi-{task.name}", config, run, "Appendix D.4")


#: K, flow samples per condition for ζ(u_i) in the B.6 step (``TrainConfig.zeta_per_condition``).
#: Measured (benchmarks/results/sbi.md): after 150 steps the importance weights are
#: heavy-tailed and log ζ̂(u_i) is biased low by ≈ 3.5–3.9 nats at K = 1, ≈ 2.4 at K = 4,
#: ≈ 0.8–1.0 at K = 32 (truth: K = 4096); a step with K = 4 took 1.3× the time of K = 1 (batch
#: 1000, 5 seeds). K = 4 buys a third of the bias back for that price; mean_i ζ̂(u_i), the
#: constraint's value, is unbiased for every K.
SBI_ZETA_PER_CONDITION = 4

#: The task-independent run settings of :func:`sbi` (argument defaults of ``adasym sbi``):
#: ``steps``/``eval_every`` of a fixed-length run (``--fixed-steps``), ``max_steps`` (the cap)
#: and ``patience`` (evaluations) of a run to convergence, the default.
SBI_RUN = types.MappingProxyType(
    {
        "num_simulations": 1000,
        "steps": 2000,
        "eval_every": 200,
        "max_steps": 20000,
        "patience": 20,
        "num_posterior_samples": 5000,
        "langevin_steps": 2000,
        "langevin_step_size": 1e-4,
    }
)


def demo() -> Preset:
    """The README demo, ``adasym train`` without data: the D.1 method and model on two moons,
    2 seeds, 1000 steps, evaluated every 100 — where both p_θ and q̃_ψ show the two moons with
    log ζ̂ near its band (checked by ``benchmarks/demo.py``)."""
    return Preset(
        "demo",
        TrainConfig(method="adasym"),
        {"dataset": "moons", "method": "adasym", "seeds": "2", "steps": 1000, "eval_every": 100},
        "README demo (D.1 model and method)",
    )


__all__ = ["DENSITY2D_DATASETS", "LATENT_DATASETS", "SBI_RUN", "Preset", "demo", "density2d", "gmm40", "latent", "sbi"]
