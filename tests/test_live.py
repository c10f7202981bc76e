"""The integration tests live, against real Letta servers on loopback (``make test-live``).

Skipped unless ``LETTA_LIVE=1``. ``make test-live`` sets it after
``scripts/letta_lab.py`` has installed (cached) and started Letta 0.11.7 (current
dialect) and 0.6.14 (seed dialect) against the deterministic fake LLM, with
their URLs and agents in ``LETTA_LIVE_URL_<v>`` / ``LETTA_LIVE_AGENT_<v>``
(``<v>`` as ``0_11_7``, ``0_6_14``). Both servers run on SQLite without Redis,
so background runs are refused (0.11.7 answers 503, the client falls back to a
foreground stream) and resume cannot be tested live: the fake server and the
captures carry it.

langchain-tests' standard integration suite runs against each server, with
``dialect="auto"`` and ``background=None``: the client asks ``/v1/health/`` and
picks the dialect and background mode itself.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import tests.test_standard_integration as standard
from langchain_letta import ChatLetta
from langchain_letta.errors import LettaAPIError, LettaNotFoundError

pytestmark = pytest.mark.skipif(
    os.environ.get("LETTA_LIVE") != "1", reason="live servers: run with make test-live"
)

VERSIONS = ("0.11.7", "0.6.14")
MEMORY_TOOL = {"0.11.7": "memory_insert", "0.6.14": "core_memory_append"}
UNKNOWN_AGENT = "agent-00000000-0000-4000-8000-000000000000"
TEXT = "Hello from the fake model"


def server(version: str) -> tuple[str, str]:
    """Base URL and agent id of the running server of ``version``."""
    key = version.replace(".", "_")
    base_url = os.environ.get(f"LETTA_LIVE_URL_{key}")
    agent_id = os.environ.get(f"LETTA_LIVE_AGENT_{key}")
    if not base_url or not agent_id:
        pytest.fail(f"LETTA_LIVE=1 but no Letta {version} server given: run make test-live")
    return base_url, agent_id


def live_model(version: str, **params: Any) -> ChatLetta:
    base_url, agent_id = server(version)
    return ChatLetta(agent_id=agent_id, base_url=base_url, **params)


class TestLiveCurrentDialect(standard.TestChatLettaIntegration):
    """The standard suite against a real Letta 0.11.7."""

    version = "0.11.7"

    @pytest.fixture(autouse=True)
    def _server(self) -> None:  # replaces the fake server of the parent class
        self._base_url, self._agent_id = server(self.version)

    @property
    def chat_model_params(self) -> dict[str, str]:
        return {"agent_id": self._agent_id, "base_url": self._base_url}


class TestLiveSeedDialect(TestLiveCurrentDialect):
    """The standard suite against a real Letta 0.6.14 (seed dialect)."""

    version = "0.6.14"


@pytest.mark.parametrize("version", VERSIONS)
def test_memory_edit_live(version: str) -> None:
    message = live_model(version, stream_tokens=False).invoke("Please remember that I like tea.")
    assert message.text == TEXT
    (call,) = [b for b in message.content_blocks if b["type"] == "server_tool_call"]
    assert call["name"] == MEMORY_TOOL[version]
    (result,) = [b for b in message.content_blocks if b["type"] == "server_tool_result"]
    assert result["status"] == "success"
    assert message.response_metadata["step_count"] >= 2
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] >= 20


@pytest.mark.parametrize("version", VERSIONS)
async def test_token_stream_live(version: str) -> None:
    chunks = [chunk async for chunk in live_model(version).astream("hi, stream please")]
    assert sum(1 for chunk in chunks if chunk.text) >= 5
    assert "".join(chunk.text for chunk in chunks) == TEXT
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata is not None


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_agent_live(version: str) -> None:
    base_url, _ = server(version)
    model = ChatLetta(agent_id=UNKNOWN_AGENT, base_url=base_url)
    with pytest.raises(LettaNotFoundError) as caught:
        model.invoke("hi")
    assert not caught.value.is_retryable


@pytest.mark.parametrize("version", VERSIONS)
def test_upstream_llm_failure_live(version: str) -> None:
    with pytest.raises(LettaAPIError) as caught:
        live_model(version).invoke("please trigger-llm-error now")
    assert caught.value.request_accepted
    assert not caught.value.is_retryable
