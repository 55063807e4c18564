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



def test_quickstart_notebook_executes(tmp_path, monkeypatch):
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
