"""The layout CONTRIBUTING.md describes: no module of the package over 700 lines."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "langchain_letta"


def test_no_module_is_over_700_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert len(sizes) > 20
    assert {name: size for name, size in sizes.items() if size > 700} == {}
