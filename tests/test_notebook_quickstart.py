"""notebooks/quickstart.ipynb runs end to end (tiny scale) in a kernel of this interpreter."""

from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(execute_notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("ADASYM_QUICKSTART_TINY", "1")
    outputs = execute_notebook(NOTEBOOK)
    assert "samples of p_θ: (5, 500, 2)" in outputs
    assert (tmp_path / "quickstart_moons.png").stat().st_size > 1000
