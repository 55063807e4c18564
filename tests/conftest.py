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


# The quick tier (`pytest -m "not slow"`) leaves out the files that train through the command
# line or through fit, start subprocesses or kernels, or run the shortened demo; CI runs everything.
SLOW_FILES = {
    "test_cli.py",
    "test_cli_conventions.py",
    "test_cli_run_kinds.py",
    "test_demo.py",
    "test_engine.py",
    "test_early_stopping_resume.py",
    "test_interrupt.py",
    "test_latent_cli.py",
    "test_latent_recipe.py",
    "test_latent_inception.py",
    "test_notebook_interop.py",
    "test_notebook_quickstart.py",
    "test_readme.py",
    "test_sbi_run.py",
    "test_units.py",
    "test_zeta_band.py",
    "test_export.py",
    "test_data_files.py",
    # whole training runs through fit, many sample sets, or the docs' examples end to end
    "test_docs_examples.py",
    "test_early_stopping.py",
    "test_fit_standardize.py",
    "test_latent_run_folder.py",
    "test_minibatch.py",
    "test_presets.py",
    "test_theta_baseline.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def execute_notebook(tmp_path, monkeypatch):
    """Run a notebook in a kernel of *this* interpreter (the venv, whatever is installed
    globally), with ``tmp_path`` as its working folder; returns its stream output as text."""
    import json
    import sys

    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    spec_dir = tmp_path / "kernels" / "adasym-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "adasym test",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path), prepend=os.pathsep)  # finds kernels/adasym-test

    def run(path) -> str:
        nb = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(
            nb, timeout=300, kernel_name="adasym-test", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        return "".join(
            o.get("text", "")
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.get("output_type") == "stream"
        )

    return run
