"""notebooks/interop.ipynb runs end to end (tiny scale) in a kernel of this interpreter:
train, save, load, export p_θ to distrax, and an importance-sampling estimate checked
against its exact value (the asserts live in the notebook)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest


nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "interop.ipynb"


def test_interop_notebook_executes(tmp_path, monkeypatch):
    # A kernel spec that points at *this* interpreter (the venv), whatever is installed globally.
    spec_dir = tmp_path / "kernels" / "adasym-interop-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "adasym interop test",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path), prepend=os.pathsep)
    monkeypatch.setenv("ADASYM_NOTEBOOK_FAST", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="adasym-interop-test", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream"
    )
    assert "FlowDistribution event_shape (2,)" in text or "Transformed event_shape (2,)" in text
    assert "E|x|^2 (IS)" in text and "checkpoint.json" in text
