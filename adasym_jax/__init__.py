"""adasym_jax: Adaptive Symmetrization of the KL Divergence (Ben-Dov & Chamon) in JAX.

A normalizing flow p_θ and an energy-based model q_ψ trained together by gradient
descent–ascent on the Lagrangian of a resilient constrained problem.
"""

from adasym_jax.checkpoint import (
    CheckpointError,
    Standardization,
    is_checkpoint,
    load_checkpoint,
    read_metadata,
    read_standardization,
    save_checkpoint,
)
from adasym_jax.config import TrainConfig
from adasym_jax.data import DATASETS, load_dataset
from adasym_jax.ebm import ResidualEBM
from adasym_jax.autoregressive import AutoregressiveSplineFlow
from adasym_jax.flow import BaseSplineFlow, NSFCouplingFlow, SplineFlow
from adasym_jax.jit import compiler_options, tuned_jit
from adasym_jax.objective import (
    constraint_values,
    dual_gradients,
    lagrangian,
    log_zeta_estimate,
    psi_surrogate,
    theta_surrogate_pathwise,
    theta_surrogate_score,
)
from adasym_jax.runner import FitInterrupted, FitResult, NonFiniteError, Trainer, fit, seed_list, shard_seeds
from adasym_jax.spline import rqs_forward, rqs_inverse
from adasym_jax.state import TrainState, build_models, init_state
from adasym_jax.train import Batch, make_train_step

from adasym_jax._version import __version__

# distrax (with TensorFlow Probability's substrate) takes a while to import: the export
# names load on first use (PEP 562), so `import adasym_jax` stays light.
_LAZY = {
    **{
        name: "adasym_jax.export"
        for name in ("EnergyDensity", "FlowDistribution", "estimate_log_zeta", "export_state", "to_distrax", "to_energy")
    },
    # plots (matplotlib loads on first use) and the densities they draw
    **{name: "adasym_jax.plotting" for name in ("grid_points", "plot_density_maps", "plot_limits")},
    "log_densities": "adasym_jax.results",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adasym_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    # checkpoints and export (issue 7)
    "CheckpointError",
    "EnergyDensity",
    "FlowDistribution",
    "Standardization",
    "estimate_log_zeta",
    "export_state",
    "is_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "read_standardization",
    "save_checkpoint",
    "to_distrax",
    "to_energy",
    "AutoregressiveSplineFlow",
    "BaseSplineFlow",
    "NSFCouplingFlow",
    "Batch",
    "DATASETS",
    "FitInterrupted",
    "FitResult",
    "NonFiniteError",
    "ResidualEBM",
    "SplineFlow",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "build_models",
    "compiler_options",
    "constraint_values",
    "dual_gradients",
    "fit",
    "grid_points",
    "log_densities",
    "plot_density_maps",
    "plot_limits",
    "init_state",
    "lagrangian",
    "load_dataset",
    "log_zeta_estimate",
    "make_train_step",
    "psi_surrogate",
    "rqs_forward",
    "rqs_inverse",
    "seed_list",
    "shard_seeds",
    "theta_surrogate_pathwise",
    "theta_surrogate_score",
    "tuned_jit",
]
