"""notebooks/quickstart.ipynb runs end to end (tiny scale) in a kernel of this interpreter."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module", autouse=True)
def _shared_compilation_cache(tmp_path_factory):
    """Identical programs built by different Trainers (a resumed run, a reloaded run, the
    notebook's kernel) compile once: JAX's persistent cache in a per-user temp folder."""
    import os
    import tempfile

    import jax

    try:
        from jax._src import compilation_cache as cc
    except ImportError:  # pragma: no cover - private module moved
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"adasym-test-jax-cache-{os.getuid()}")
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes")
    old = {n: getattr(jax.config, n) for n in names}
    for n, v in zip(names, (path, 0.0, 0)):
        jax.config.update(n, v)
    cc.reset_cache()
    yield path
    for n, v in old.items():
        jax.config.update(n, v)
    cc.reset_cache()


def test_quickstart_notebook_executes(tmp_path, monkeypatch, _shared_compilation_cache):
    # A kernel spec that points at *this* interpreter (the venv), whatever is installed globally.
    spec_dir = tmp_path / "kernels" / "adasym-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "adasym test",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("ADASYM_QUICKSTART_TINY", "1")
    if _shared_compilation_cache:  # the kernel reuses what tests/test_cli.py compiled
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", _shared_compilation_cache)
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path), prepend=os.pathsep)  # finds kernels/adasym-test
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="adasym-test",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )
    assert "samples of p_θ: (5, 500, 2)" in outputs
    assert (tmp_path / "quickstart_moons.png").stat().st_size > 1000
