"""Shared test settings: a tiny configuration so compiled programs stay cheap."""

import os
import tempfile
import warnings

import pytest

# JAX's persistent compilation cache for the whole session, set before JAX is imported:
# identical programs built by different Trainer objects, subprocesses (README blocks, forced
# host devices) and notebook kernels (which inherit the environment) compile once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"adasym-test-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

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
