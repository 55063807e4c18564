"""notebooks/interop.ipynb runs end to end (tiny scale) in a kernel of this interpreter:
train, save, load, export p_θ to distrax, and an importance-sampling estimate checked
against its exact value (the asserts live in the notebook)."""

from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "interop.ipynb"


def test_interop_notebook_executes(execute_notebook, monkeypatch):
    monkeypatch.setenv("ADASYM_NOTEBOOK_FAST", "1")
    text = execute_notebook(NOTEBOOK)
    assert "FlowDistribution event_shape (2,)" in text or "Transformed event_shape (2,)" in text
    assert "E|x|^2 (IS)" in text and "checkpoint.json" in text
