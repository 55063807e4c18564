"""Shared test settings: a tiny configuration so compiled programs stay cheap."""

import warnings

import pytest

# distrax pulls tfp-nightly, whose import emits this DeprecationWarning; nothing else is filtered.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"tensorflow_probability.*")


@pytest.fixture(scope="session")
def tiny_config():
    from adasym_jax import TrainConfig

    return TrainConfig(
        num_transforms=2,
        num_bins=4,
        flow_hidden=(16, 16),
        ebm_hidden=16,
        ebm_blocks=1,
        num_zeta_samples=128,
        eval_zeta_samples=256,
    )
