"""Record the cassettes in ``cassettes/`` from real Letta servers (``make record``).

For each release (0.11.7, 0.6.14, then 0.16.8) this installs it if needed, starts
the fake LLM and the server on loopback (``scripts/letta_lab.py``; 0.16.8 with its
PostgreSQL and Redis), creates the lab's agent and plays the release's scenarios
of ``scripts/cassettes.py`` through ``ChatLetta`` under vcrpy
(``record_mode="all"``): one cassette per scenario. A scenario that gates a tool
for approval gets an agent of its own, so that the pending approval does not
block the others; a conversation scenario talks in a conversation of the lab's
agent created just before (not recorded: its id is stored as ``conv-recorded``).
Run from the repository root::

    python -m scripts.record [--versions 0.16.8 ...] [--only plain tokens ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from typing import Any

from langchain_letta import ChatLetta, LettaClient, LettaError
from scripts import letta_lab
from scripts.cassettes import (
    AGENT,
    BASE_URL,
    CASSETTES,
    CONVERSATION,
    DIALECTS,
    RECORD_SECRETS,
    SCENARIOS,
    Scenario,
    cassette_path,
    model_params,
    scenarios_of,
    use_cassette,
)


def agent_for(server: letta_lab.Server, scenario: Scenario) -> str:
    """The lab's agent, or a fresh one with ``scenario.approval_tool`` gated for approval.

    The gate is set with no User-Agent: 0.16.8 answers ``null`` then rather than the
    whole agent (its "SDK v1.0+" check), and gates the tool either way.
    """
    if not scenario.approval_tool:
        return server.agent_id
    agent = letta_lab.create_agent(server.base_url, parallel_tool_calls=True)
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{server.base_url}/v1/agents/{agent}/tools/approval/{scenario.approval_tool}",
        data=json.dumps({"requires_approval": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="PATCH",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()
    return agent


def conversation_for(base_url: str, agent_id: str, scenario: Scenario) -> str | None:
    """A new conversation of ``agent_id`` if the scenario talks in one (not recorded)."""
    if not scenario.conversation:
        return None
    with LettaClient(base_url=base_url) as client:
        return client.create_conversation(agent_id)


def play(version: str, scenario: Scenario, real_agent: str, base_url: str) -> str:
    """Send one scenario's message, recording the exchange; returns a summary line."""
    params: dict[str, Any] = {**model_params(version, scenario), **RECORD_SECRETS}
    if params["agent_id"] == AGENT:
        params["agent_id"] = real_agent
    real_conversation = conversation_for(base_url, real_agent, scenario)
    if params.get("conversation_id") == CONVERSATION:
        params["conversation_id"] = real_conversation
    model = ChatLetta(**params)
    path = cassette_path(version, scenario.name)
    path.unlink(missing_ok=True)
    with use_cassette(version, scenario.name, "all", real_agent, real_conversation):
        try:
            if scenario.stream_tokens:
                chunks = list(model.stream(scenario.prompt))
                text = "".join(chunk.text for chunk in chunks)
                outcome = f"{len(chunks)} chunks, text {text!r}"
            else:
                message = model.invoke(scenario.prompt)
                steps = message.response_metadata.get("step_count")
                outcome = f"text {message.text!r}, {steps} steps, usage {message.usage_metadata}"
        except LettaError as error:
            outcome = f"{type(error).__name__} (HTTP {error.status_code}): {error}"
    return f"{version} {scenario.name}: {outcome}"


def record(version: str, names: list[str]) -> None:
    """Start one release and record the named scenarios against it."""
    port = int(BASE_URL.rsplit(":", 1)[1])
    names = [name for name in names if name in scenarios_of(version)]
    with letta_lab.servers((version,), {version: port}) as running:
        server = running[version]
        health = letta_lab.get_json(f"{server.base_url}/v1/health/")
        folder = CASSETTES / version
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            scenario = SCENARIOS[name]
            agent = agent_for(server, scenario)
            letta_lab.log(play(version, scenario, agent, server.base_url))
        info = {
            "letta_version": health.get("version") if isinstance(health, dict) else None,
            "install": " ".join(letta_lab.RELEASES[version][0]),
            "exclude_newer": letta_lab.RELEASES[version][1],
            "agent": f"{letta_lab.AGENT_NAME} (stored as {AGENT})",
            "scenarios": {name: SCENARIOS[name].prompt for name in names},
        }
        previous = folder / "recording.json"
        if previous.exists():  # a partial re-recording (--only) keeps the others listed
            recorded = json.loads(previous.read_text()).get("scenarios", {})
            info["scenarios"] = {
                name: SCENARIOS[name].prompt
                for name in scenarios_of(version)
                if name in recorded or name in names
            }
        (folder / "recording.json").write_text(json.dumps(info, indent=2) + "\n")


def main() -> int:
    """Command line: which releases and scenarios to record (default: all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="+", default=list(DIALECTS))
    parser.add_argument("--only", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    args = parser.parse_args()
    for version in args.versions:
        if version not in letta_lab.RELEASES:
            parser.error(f"unknown release {version}")
        record(version, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
