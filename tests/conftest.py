from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CAPTURES = Path(__file__).parent / "data" / "letta-streams"


def capture_status(body: Path) -> int:
    """The HTTP status recorded beside a capture (0 where the server never answered)."""
    stem = body.name.rsplit(".", 1)[0]
    return int(body.with_name(f"{stem}.status.txt").read_text().strip())


def expected_payloads(body: Path) -> list[tuple[str, dict[str, object] | str]]:
    """Read a capture independently of the package: (event name, JSON payload) per frame.

    Frames after ``[DONE]`` and a frame cut off by the end of the file are left out.
    """
    frames: list[tuple[str, dict[str, object] | str]] = []
    for block in body.read_text().split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        if data is None:
            continue
        if data == "[DONE]":
            break
        try:
            frames.append((name, json.loads(data)))
        except ValueError:
            break  # the capture was cut in the middle of this frame
    return frames


@pytest.fixture
def captures() -> Path:
    return CAPTURES


# The live tests need real Letta servers, which `make test-live` starts; elsewhere they
# are not collected at all rather than reported as a wall of skips.
collect_ignore = [] if os.environ.get("LETTA_LIVE") == "1" else ["test_live.py"]
