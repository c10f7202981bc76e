"""langchain-tests' standard integration suite, against a fake server replaying real streams.

The suite runs twice: against a real Letta 0.16.8 turn (current dialect, token-streamed
"Hello from the fake model" with usage) and against a real 0.6.14 turn (seed dialect:
``text`` and nested ``config`` are sent, the answer comes in ``assistant_message``). Each
request gets that turn, served over a real socket by ``FakeLettaServer``, which reports the
capture's server version so that ``dialect="auto"`` picks the dialect. Requests that offer
the suite's tools get the real 0.16.8 turns of ``standard-tools`` (the agent calling
each tool, then answering its result). The tests that cannot apply are switched
off by the suite's own flags, each with its reason (PDF, audio and video inputs stay at
the suite's default, off: Letta message content has no such parts).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_letta import ChatLetta
from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
from tests.conftest import CAPTURES

AGENT = "agent-55573f99-7c7b-4e3c-a4ac-cada9620ce68"


TOOLS = CAPTURES / "0.16.8/standard-tools"


def _tool_turns() -> tuple[dict[tuple[str, ...], str], dict[str, str]]:
    """The real 0.16.8 turns of ``standard-tools`` (see its README), from its ``calls.tsv``.

    Returns the token-mode turn in which the agent calls the suite's tools, by the
    question and the tools offered (``(question, *tool names)``), and the turn that
    answers each call's result, by call id: ``NN-<stem>-request`` is answered by
    ``NN+1-<stem>-return``.
    """
    rows = [line.split("\t") for line in (TOOLS / "calls.tsv").read_text().splitlines()[1:]]
    asks: dict[tuple[str, ...], str] = {}
    results: dict[str, str] = {}
    for exchange, call_id, *_ in rows:
        number, stem = exchange.split("-", 1)
        results[call_id] = f"{int(number) + 1:02d}-{stem.removesuffix('-request')}-return.sse"
        body = json.loads((TOOLS / f"{exchange}.request.json").read_text())
        if body["stream_tokens"]:
            asks.setdefault(_asked(body), f"{exchange}.sse")
    return asks, results


def _asked(body: dict[str, Any]) -> tuple[str, ...]:
    """What decides the agent's turn: the question, and the tools offered."""
    question = str(body["messages"][0].get("content"))
    return (question, *sorted(tool["name"] for tool in body.get("client_tools") or []))


TOOL_CALLS, TOOL_RESULTS = _tool_turns()


def replay(plain: Reply) -> Callable[[RecordedRequest], Reply]:
    """What the real server answered: the tool turns where tools are offered, else ``plain``.

    A request the captures have no turn for gets ``plain``: the agent answering in
    text.
    """

    def reply_to(request: RecordedRequest) -> Reply:
        body = request.json()
        first = body["messages"][0]
        if first.get("type") == "approval":
            return Reply.from_capture(TOOLS / TOOL_RESULTS[first["approvals"][0]["tool_call_id"]])
        if _asked(body) in TOOL_CALLS:
            return Reply.from_capture(TOOLS / TOOL_CALLS[_asked(body)])
        return plain

    return reply_to


@pytest.fixture(scope="class")
def letta_server(request: pytest.FixtureRequest) -> Iterator[FakeLettaServer]:
    turn = Reply.from_capture(CAPTURES / request.cls.capture)
    with FakeLettaServer(replay(turn), version=request.cls.server_version) as server:
        yield server


class TestChatLettaIntegration(ChatModelIntegrationTests):
    capture = "0.16.8/letta_v1_agent/02-stream-tokens.sse"
    server_version = "0.16.8"

    @pytest.fixture(autouse=True)
    def _server(self, letta_server: FakeLettaServer) -> Iterator[None]:
        self._base_url = letta_server.base_url
        first_request = len(letta_server.stream_requests)
        yield
        for sent in letta_server.stream_requests[first_request:]:
            self.check_dialect(sent.json())

    @staticmethod
    def check_dialect(body: dict[str, Any]) -> None:
        assert all(
            ("content" in message or message.get("type") == "approval") and "otid" in message
            for message in body["messages"]
        )

    @property
    def chat_model_class(self) -> type[ChatLetta]:
        return ChatLetta

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "agent_id": "agent-55573f99-7c7b-4e3c-a4ac-cada9620ce68",
            "base_url": self._base_url,
            # test_structured_few_shot_examples and the unicode test bind with
            # tool_choice="any", which Letta cannot force: offered, the agent decides.
            "lenient_tool_choice": True,
        }

    @property
    def model_override_value(self) -> str:
        return "openai/gpt-4o-mini"

    @property
    def has_tool_choice(self) -> bool:
        # Letta cannot force a tool call per request (tests/unit/test_tools.py).
        return False

    # The tests below are switched off by the suite's own flags; each says why.

    @property
    def supports_json_mode(self) -> bool:
        # Letta has no JSON mode: with_structured_output uses a client tool for every method.
        return False

    @property
    def supports_image_inputs(self) -> bool:
        # ChatLetta sends images, but the standard test downloads its image from the
        # internet, which tests here never reach; Letta image parts are tested offline
        # (tests/test_chat_models.py::test_images_are_sent_as_letta_image_parts).
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        # A Letta tool return is text: an image in a ToolMessage would be lost.
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        # Its history answers a tool_use this agent never made: a stateful agent cannot
        # take the result of another model's call (ChatLetta leaves such exchanges out).
        return False

    @property
    def enable_vcr_tests(self) -> bool:
        # test_stream_time records with the suite's VCR setup; this package's own
        # cassettes of real servers are replayed in tests/test_cassettes.py.
        return False


class TestChatLettaIntegrationSeedDialect(TestChatLettaIntegration):
    capture = "0.6.14/memgpt_agent/02-stream-tokens.sse"
    server_version = "0.6.14"

    @property
    def has_tool_calling(self) -> bool:
        # Client tools came with Letta 0.16.2: ChatLetta refuses them on 0.6.14 before
        # sending (tests/test_tool_loops.py), so the tool tests cannot apply here.
        return False

    @property
    def has_structured_output(self) -> bool:
        # Structured output is a client tool (0.16.2+), refused on 0.6.14 likewise.
        return False

    @property
    def supports_model_override(self) -> bool:
        # Letta applies override_model from 0.16.4 on; ChatLetta refuses model= before that
        # (tests/test_chat_models.py checks the refusal) rather than name a model that
        # did not answer.
        return False

    @staticmethod
    def check_dialect(body: dict[str, Any]) -> None:
        assert all(set(message) <= {"role", "text", "name"} for message in body["messages"])
        assert body["config"]["use_assistant_message"] is True
