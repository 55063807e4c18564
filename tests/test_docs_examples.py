"""Every ```python block of docs/api.md runs (in order, in one namespace), and every public
name of ``adasym_jax.__all__`` has a section there."""

import re
from pathlib import Path

import pytest

import adasym_jax


API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[int, str]]:
    text = API_PAGE.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_every_public_name_is_documented():
    headings = set(re.findall(r"^### `([A-Za-z_][A-Za-z0-9_]*)`", API_PAGE.read_text(), re.M))
    missing = sorted(set(adasym_jax.__all__) - headings)
    assert not missing, f"docs/api.md has no section for {missing}"
    unknown = sorted(headings - set(adasym_jax.__all__))
    assert not unknown, f"docs/api.md documents names that are not public: {unknown}"


def test_examples_run(capsys):
    blocks = _blocks()
    assert len(blocks) >= len(adasym_jax.__all__)
    namespace: dict = {"__name__": "docs_api"}
    for line, code in blocks:
        try:
            exec(compile(code, f"{API_PAGE.name}:{line}", "exec"), namespace)
        except Exception as e:  # name the block that failed
            pytest.fail(f"example at docs/api.md line {line} failed: {type(e).__name__}: {e}")
