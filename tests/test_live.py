"""The integration tests live, against real Letta servers on loopback (``make test-live``).

Skipped unless ``LETTA_LIVE=1``. ``make test-live`` sets it after
``scripts/letta_lab.py`` has installed (cached) and started Letta 0.16.8 (current
dialect, PostgreSQL and Redis), 0.11.7 (current dialect) and 0.6.14 (seed dialect)
against the deterministic fake LLM, with their URLs and agents in
``LETTA_LIVE_URL_<v>`` / ``LETTA_LIVE_AGENT_<v>`` (``<v>`` as ``0_16_8``,
``0_11_7``, ``0_6_14``). 0.11.7 and 0.6.14 run on SQLite without Redis, so
background runs are refused there (0.11.7 answers 503, the client falls back to a
foreground stream); 0.16.8 has Redis, so ChatLetta runs every turn there as a
background run, and resume is tested live against it.

langchain-tests' standard integration suite runs against each server, with
``dialect="auto"`` and ``background=None``: the client asks ``/v1/health/`` and
picks the dialect and background mode itself.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import tests.test_standard_integration as standard
from langchain_letta import ChatLetta, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta.errors import LettaAPIError, LettaNotFoundError, StreamProgress

pytestmark = pytest.mark.skipif(
    os.environ.get("LETTA_LIVE") != "1", reason="live servers: run with make test-live"
)

VERSIONS = ("0.16.8", "0.11.7", "0.6.14")
MEMORY_TOOL = {"0.16.8": "memory_insert", "0.11.7": "memory_insert", "0.6.14": "core_memory_append"}
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

    @property
    def supports_model_override(self) -> bool:
        # override_model exists from Letta 0.16.4: ChatLetta refuses model= on older servers.
        return self.version == "0.16.8"


class TestLiveBackgroundRuns(TestLiveCurrentDialect):
    """The standard suite against a real Letta 0.16.8 with Redis: every turn a background run."""

    version = "0.16.8"

    @property
    def model_override_value(self) -> str:
        # 0.16.8 names models by provider handle; an OpenAI provider whose base URL is
        # not api.openai.com (the fake LLM) is listed as "openai-proxy".
        return "openai-proxy/gpt-4o-mini"


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


def test_background_run_is_resumable_live() -> None:
    """0.16.8 with Redis: the client asks for a background run; it can be read again."""
    base_url, agent_id = server("0.16.8")
    with LettaClient(base_url=base_url) as client:
        stream = client.stream(agent_id, StreamRequest(messages=[OutgoingMessage(content="hi")]))
        first = [event.raw for event in stream]  # type: ignore[attr-defined]
        progress = stream.progress
        assert progress.run_id
        assert progress.last_seq_id is not None  # seq_ids: a background run
        assert "".join(e.get("content") or "" for e in first) == TEXT
        again = client.resume(agent_id, StreamProgress(run_id=progress.run_id, last_seq_id=2))
        rest = [event.raw for event in again]  # type: ignore[attr-defined]
    # stop_reason and usage_statistics carry no seq_id: they come again at the end
    tail = [e for e in first if e.get("seq_id") is None]
    assert [e["message_type"] for e in tail] == ["stop_reason", "usage_statistics"]
    assert rest[-2:] == tail
    assert rest[:-2] == [e for e in first if (e.get("seq_id") or 0) > 2]
    assert rest[:-2]


def test_chat_model_resumes_a_run_live() -> None:
    """``resume_from`` reads a finished background run again, without a new turn."""
    model = live_model("0.16.8")
    chunks = list(model.stream("hi, resume me later"))
    run_id = chunks[-1].response_metadata["run_id"]
    again = list(model.stream([], resume_from=StreamProgress(run_id=run_id, last_seq_id=0)))
    assert "".join(chunk.text for chunk in again) == TEXT
