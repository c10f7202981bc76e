"""Generate the sync shell from the async one: ``python -m scripts.gen_sync [--check]``.

``langchain_letta/_wire/sync_client.py`` is ``async_client.py`` through ``unasync``
(``async``/``await`` dropped, the names of ``REPLACEMENTS`` swapped), then through
ruff's import sorting, ``yield from`` and formatter. ``--check`` writes nothing and fails if the
committed file differs; ``tests/unit/test_twins.py`` runs the same comparison.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent
WIRE = ROOT / "langchain_letta" / "_wire"
TWINS = {"async_client.py": "sync_client.py"}
"""Generated modules: the async source, the sync module made from it."""
REPLACEMENTS = {
    "AsyncLettaClient": "LettaClient",
    "AsyncEventStream": "EventStream",
    "AsyncClient": "Client",
    "AsyncRetrying": "Retrying",
    "async_io": "sync_io",
    "aacquire": "acquire",
    "aclose": "close",
    "aiter_bytes": "iter_bytes",
}
"""Names that differ between the flavours, besides unasync's own (``__aiter__``, ...)."""
HEADER = "# Generated from {source} by `python -m scripts.gen_sync`: edit that one, not this.\n"


def generate(source: str) -> str:
    """The sync module made from ``langchain_letta/_wire/<source>``."""
    target = TWINS[source]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / source
        copy.write_text((WIRE / source).read_text(encoding="utf-8"), encoding="utf-8")
        rule = unasync.Rule(source, target, additional_replacements=REPLACEMENTS)
        unasync.unasync_files([str(copy)], [rule])
        out = Path(tmp) / target
        out.write_text(HEADER.format(source=source) + out.read_text(encoding="utf-8"))
        ruff = Path(sys.executable).with_name("ruff")
        config = str(ROOT / "pyproject.toml")
        for command in (
            ["check", "--fix-only", "--unsafe-fixes", "--select", "I,UP028", "--quiet"],
            ["format", "--quiet"],
        ):
            subprocess.run(  # noqa: S603 - our own ruff, on our own file
                [str(ruff), *command, "--config", config, str(out)], check=True
            )
        return out.read_text(encoding="utf-8")


def main() -> int:
    """Write (or with ``--check``, compare) every generated module."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    check = parser.parse_args().check
    stale = []
    for source, target in TWINS.items():
        made = generate(source)
        path = WIRE / target
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != made:
                stale.append(target)
        else:
            path.write_text(made, encoding="utf-8")
    for target in stale:
        print(f"{target} is not generated from its async twin: python -m scripts.gen_sync")  # noqa: T201
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
