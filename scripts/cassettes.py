"""What the cassettes in ``cassettes/`` hold and how vcrpy records and replays them.

Shared by ``scripts/record.py`` (records against real servers) and
``tests/test_cassettes.py`` (replays with ``record_mode="none"``), so that both
send byte-for-byte the same requests.

* Requests match on method, path, query and JSON body. The random ``otid`` of
  each message is removed from the body before a request is stored or matched.
* The recorded agent's id is replaced by :data:`AGENT` in stored URIs, so
  re-recording does not change every request and replay needs no id file; the
  recorded conversation's id likewise by :data:`CONVERSATION`, so that replay
  addresses the conversation the cassette holds (the path is matched).
* ``Authorization``, ``X-BARE-PASSWORD`` and API-key headers are replaced by
  ``<filtered>``; recording sets :data:`RECORD_SECRETS` so that a test can check
  that none of them reached a cassette.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import vcr
import yaml
from vcr.request import Request
from vcr.serializers import yamlserializer

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"
AGENT = "agent-recorded"
"""The agent id the cassettes show in place of the recorded agent's."""
CONVERSATION = "conv-recorded"
"""The conversation id the cassettes show in place of the recorded conversation's."""
UNKNOWN_AGENT = "agent-00000000-0000-4000-8000-000000000000"
BASE_URL = "http://127.0.0.1:8283"
RECORD_SECRETS = {"api_key": "sk-record-secret", "password": "bare-record-secret"}
"""Credentials sent while recording (the lab servers ignore them); never in a cassette."""
FILTERED_HEADERS = ("authorization", "x-bare-password", "x-api-key", "api-key", "user_id")
"""Replaced by ``<filtered>``; ``content-length`` is dropped (it counted the otids)."""

DIALECTS: dict[str, Literal["current", "seed"]] = {
    "0.11.7": "current",
    "0.6.14": "seed",
    "0.16.8": "current",
}
"""The recorded releases and the dialect each reads."""
WRONG_DIALECT: dict[str, Literal["current", "seed"]] = {
    "0.11.7": "seed",
    "0.6.14": "current",
    "0.16.8": "seed",
}


@dataclass(frozen=True)
class Scenario:
    """One recorded turn: a cassette per release."""

    name: str
    prompt: str
    stream_tokens: bool
    agent: str = AGENT
    wrong_dialect: bool = False
    """Send the other release's dialect, forced: the server answers 422."""
    approval_tool: str | None = None
    """Gate this tool for approval first (on an agent of its own); the prompt calls it."""
    conversation: bool = False
    """Talk in a conversation of the agent, created for the recording (Letta 0.16.2+)."""
    releases: tuple[str, ...] = ("0.11.7", "0.6.14", "0.16.8")
    """The releases this scenario is recorded for."""


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("plain", "hi", stream_tokens=False),
        Scenario("tokens", "hi again", stream_tokens=True),
        Scenario("server_tool", "Please search our conversation for hello.", stream_tokens=False),
        Scenario("memory_edit", "Please remember that I like tea.", stream_tokens=False),
        # The memory tool asks for a heartbeat, so the agent takes a second step to answer;
        # token-streamed, this is a multi-step token stream.
        Scenario("several_steps", "Please remember that I like green tea.", stream_tokens=True),
        Scenario("unknown_agent", "hi", stream_tokens=False, agent=UNKNOWN_AGENT),
        Scenario("validation_error", "hi", stream_tokens=False, wrong_dialect=True),
        Scenario("llm_error", "please trigger-llm-error now", stream_tokens=False),
        # Tool approval exists from 0.13 on: the run stops with requires_approval.
        Scenario(
            "approval_request",
            "call:memory_insert please",
            stream_tokens=False,
            approval_tool="memory_insert",
            releases=("0.16.8",),
        ),
        # A conversation of the agent (0.16.2+): POST /v1/conversations/{id}/messages;
        # the client asks /v1/health/ first, since only some releases have them.
        Scenario(
            "conversation",
            "hi in a conversation",
            stream_tokens=False,
            conversation=True,
            releases=("0.16.8",),
        ),
    )
}


def scenarios_of(version: str) -> list[str]:
    """The scenarios recorded for one release, in recording order."""
    return [name for name, scenario in SCENARIOS.items() if version in scenario.releases]


def model_params(version: str, scenario: Scenario) -> dict[str, Any]:
    """``ChatLetta`` keyword arguments for a scenario, the same when recording and replaying."""
    dialect = WRONG_DIALECT[version] if scenario.wrong_dialect else DIALECTS[version]
    params: dict[str, Any] = {
        "agent_id": scenario.agent,
        "base_url": BASE_URL,
        "dialect": dialect,
        "background": False,  # deterministic requests, and no /v1/health/ probe
        "stream_tokens": scenario.stream_tokens,
        "max_retries": 0,
    }
    if scenario.conversation:
        params["conversation_id"] = CONVERSATION
    return params


def cassette_path(version: str, scenario: str) -> Path:
    """Where one scenario's cassette for one release lives."""
    return CASSETTES / version / f"{scenario}.yaml"


def _without_otids(
    request: Request, real_agent: str | None, real_conversation: str | None = None
) -> Request:
    if real_agent:
        request.uri = request.uri.replace(real_agent, AGENT)
    if real_conversation:
        request.uri = request.uri.replace(real_conversation, CONVERSATION)
    if request.body:
        try:
            body = json.loads(request.body)
        except ValueError:
            return request
        if isinstance(body, dict) and isinstance(body.get("messages"), list):
            for message in body["messages"]:
                if isinstance(message, dict):
                    message.pop("otid", None)
            request.body = json.dumps(body, sort_keys=True).encode()
    return request


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (SSE bodies) as YAML literal blocks, readable in review."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = (
        "|"
        if "\n" in value and not any(line != line.rstrip() for line in value.split("\n"))
        else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_str)


class ReadableYaml:
    """vcrpy's safe YAML loader; dumps SSE bodies as literal blocks."""

    @staticmethod
    def serialize(cassette: dict[str, Any]) -> str:
        """Dump a cassette (plain data only: vcrpy converted bytes to text)."""
        return yaml.dump(cassette, Dumper=_LiteralDumper, allow_unicode=True, width=100)

    @staticmethod
    def deserialize(text: str) -> Any:
        """Load with vcrpy's safe cassette loader."""
        return yamlserializer.deserialize(text)


def make_vcr(
    record_mode: Literal["all", "none"],
    real_agent: str | None = None,
    real_conversation: str | None = None,
) -> vcr.VCR:
    """The vcrpy configuration of the cassettes.

    When recording, ``real_agent`` and ``real_conversation`` (the server's ids) are
    rewritten to :data:`AGENT` and :data:`CONVERSATION` in the stored requests.
    """
    recorder = vcr.VCR(
        record_mode=record_mode,
        serializer="readable-yaml",
        match_on=["method", "path", "query", "body"],
        filter_headers=[*((name, "<filtered>") for name in FILTERED_HEADERS), "content-length"],
        before_record_request=lambda request: _without_otids(
            request, real_agent, real_conversation
        ),
        decode_compressed_response=True,
    )
    recorder.register_serializer("readable-yaml", ReadableYaml())
    return recorder


def use_cassette(
    version: str,
    scenario: str,
    record_mode: Literal["all", "none"],
    real_agent: str | None = None,
    real_conversation: str | None = None,
) -> Any:
    """The cassette of one scenario and release, as a context manager."""
    recorder = make_vcr(record_mode, real_agent, real_conversation)
    return recorder.use_cassette(
        str(cassette_path(version, scenario)), allow_playback_repeats=record_mode == "none"
    )
