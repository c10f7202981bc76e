"""Capture what a real Letta 0.16.8 says about approvals, client tools and conversations.

Run beside the lab servers (``letta_lab.py`` exports their URLs)::

    python scripts/letta_lab.py run -- python -m scripts.capture016 OUT_DIR

Every exchange is saved byte-exact, in the layout of ``tests/data/letta-streams``:
``NN-name.request.json`` (the exact body sent), ``NN-name.request-headers.txt`` (the
method, path and the headers that matter: User-Agent), ``NN-name.status.txt``,
``NN-name.headers.txt`` (raw response headers) and the body as ``.sse`` (event
streams), ``.json`` (JSON with a 2xx status) or ``.txt`` (anything else).

Why a script of our own rather than curl: two requests must overlap (busy
conversations, a second message while a run is busy), ids from one answer feed the
next request, and the User-Agent must be controlled per request (0.16.8 answers
some requests differently for ``python-httpx``). The agents are created here, with
the lab's configuration, so that each scenario starts from a known state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scripts.letta_lab import create_agent

NO_UA = "(none)"
HTTPX_UA = f"python-httpx/{httpx.__version__}"
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city's name."}},
        "required": ["city"],
    },
}
TIMEOUT = httpx.Timeout(connect=5.0, read=90.0, write=10.0, pool=10.0)


def compact(payload: object) -> bytes:
    """JSON as a client would send it: compact, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Recorder:
    """Sends requests and saves each exchange under ``NN-name`` in one folder."""

    def __init__(self, folder: Path, base_url: str) -> None:
        """Record into ``folder`` (created) against ``base_url``."""
        self.folder = folder
        self.base_url = base_url
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.notes: list[tuple[str, str, str, int, str]] = []

    def exchange(
        self,
        name: str,
        method: str,
        path: str,
        body: object = None,
        *,
        user_agent: str = NO_UA,
        base_url: str | None = None,
        on_frame: Callable[[bytes], None] | None = None,
        note: str = "",
    ) -> tuple[int, bytes]:
        """Send one request, save it and its answer byte-exact; return status and body.

        ``on_frame`` sees the body as it arrives (to start an overlapping request at
        the right moment).
        """
        url = (base_url or self.base_url) + path
        headers = {"Accept": "text/event-stream, application/json"}
        content = None if body is None else compact(body)
        if content is not None:
            headers["Content-Type"] = "application/json"
        with httpx.Client(timeout=TIMEOUT) as client:
            # httpx sends "python-httpx/x" unless told otherwise; None removes the header
            client.headers.pop("User-Agent", None)
            if user_agent != NO_UA:
                headers["User-Agent"] = user_agent
            with client.stream(method, url, content=content, headers=headers) as response:
                chunks = []
                for chunk in response.iter_raw():
                    chunks.append(chunk)
                    if on_frame is not None:
                        on_frame(chunk)
                raw = b"".join(chunks)
                status = response.status_code
                head = f"HTTP/1.1 {status} {response.reason_phrase}\r\n".encode()
                head += b"".join(k + b": " + v + b"\r\n" for k, v in response.headers.raw)
                head += b"\r\n"
                kind = response.headers.get("content-type", "")
        suffix = "sse" if "text/event-stream" in kind else "json" if status < 300 else "txt"
        stem = self.folder / name
        if content is not None:
            stem.with_name(f"{name}.request.json").write_bytes(content)
        stem.with_name(f"{name}.request-headers.txt").write_text(
            f"{method} {path}\nUser-Agent: {user_agent}\n"
        )
        stem.with_name(f"{name}.status.txt").write_text(f"{status}\n")
        stem.with_name(f"{name}.headers.txt").write_bytes(head)
        stem.with_name(f"{name}.{suffix}").write_bytes(raw)
        with self.lock:
            self.notes.append((name, method, path, status, note))
        sys.stderr.write(f"capture016: {name}: {method} {path} -> {status} ({len(raw)} B)\n")
        return status, raw


def frames(raw: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an event stream (``[DONE]`` and non-JSON left out)."""
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            try:
                out.append(json.loads(line[6:]))
            except ValueError:
                continue
    return out


def approval_ids(raw: bytes) -> list[str]:
    """The tool call ids the stream asks approval for (deltas merged)."""
    ids: list[str] = []
    for frame in frames(raw):
        if frame.get("message_type") != "approval_request_message":
            continue
        calls = frame.get("tool_calls") or frame.get("tool_call") or {}
        # steps mode: a list; token mode: one object per delta
        for call in calls if isinstance(calls, list) else [calls]:
            call_id = (call or {}).get("tool_call_id")
            if call_id and call_id not in ids:
                ids.append(call_id)
    return ids


def run_id(raw: bytes) -> str | None:
    """The run id the stream names first."""
    for frame in frames(raw):
        if isinstance(frame.get("run_id"), str):
            return str(frame["run_id"])
    return None


def json_of(raw: bytes) -> Any:
    """A JSON body, or None."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def user(text: str) -> dict[str, Any]:
    """A current-dialect user message."""
    return {"role": "user", "content": text}


def overlapping(first: Callable[[], object], second: Callable[[], object], after: float) -> None:
    """Run ``first`` in a thread, ``second`` ``after`` seconds later, wait for both."""
    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(after)
    second()
    thread.join(timeout=120)


def server_tool_approvals(rec: Recorder, base_url: str) -> None:
    """A server tool gated for approval: request, conflict while pending, approve, deny."""
    agent = create_agent(base_url, parallel_tool_calls=True)
    (rec.folder / "agent_id-approvals.txt").write_text(agent + "\n")
    stream = f"/v1/agents/{agent}/messages/stream"
    _, tools = rec.exchange("01-agent-tools", "GET", f"/v1/agents/{agent}/tools")
    names = [t.get("name") for t in json_of(tools) or []]
    tool = "memory_insert" if "memory_insert" in names else str(names[0])
    gate = {"requires_approval": True}
    rec.exchange(
        "02-gate-tool-no-ua",
        "PATCH",
        f"/v1/agents/{agent}/tools/approval/{tool}",
        gate,
        note=f"gate {tool} for approval, no User-Agent",
    )
    rec.exchange(
        "03-gate-tool-httpx-ua",
        "PATCH",
        f"/v1/agents/{agent}/tools/approval/{tool}",
        gate,
        user_agent=HTTPX_UA,
        note="the same with python-httpx's User-Agent",
    )
    _, raw = rec.exchange(
        "04-approval-request-steps",
        "POST",
        stream,
        {"messages": [user(f"call:{tool} please")], "stream_tokens": False},
    )
    pending = approval_ids(raw)
    rec.exchange(
        "05-message-while-pending",
        "POST",
        stream,
        {"messages": [user("hi, anybody there?")], "stream_tokens": False},
        note="a new user message while the approval is pending",
    )
    rec.exchange(
        "06-message-while-pending-background",
        "POST",
        stream,
        {"messages": [user("hi again?")], "stream_tokens": False, "background": True},
        note="the same with background: true",
    )
    rec.exchange(
        "07-approve-steps",
        "POST",
        stream,
        {
            "messages": [
                {
                    "type": "approval",
                    "approvals": [
                        {"type": "approval", "tool_call_id": i, "approve": True} for i in pending
                    ],
                }
            ],
            "stream_tokens": False,
        },
    )
    _, raw = rec.exchange(
        "08-approval-request-tokens",
        "POST",
        stream,
        {"messages": [user(f"call:{tool} again")], "stream_tokens": True},
    )
    pending = approval_ids(raw)
    rec.exchange(
        "09-deny-with-reason-tokens",
        "POST",
        stream,
        {
            "messages": [
                {
                    "type": "approval",
                    "approvals": [
                        {
                            "type": "approval",
                            "tool_call_id": i,
                            "approve": False,
                            "reason": "Not now, thanks.",
                        }
                        for i in pending
                    ],
                }
            ],
            "stream_tokens": True,
        },
    )
    rec.exchange("10-messages-after-approvals", "GET", f"/v1/agents/{agent}/messages?limit=30")
    # a pending approval inside a conversation, and a new message on that conversation
    _, conv = rec.exchange(
        "11-create-conversation", "POST", f"/v1/conversations/?agent_id={agent}", {}
    )
    conv_id = (json_of(conv) or {}).get("id")
    _, raw = rec.exchange(
        "12-conversation-approval-request",
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        {"messages": [user(f"call:{tool} in a conversation")], "stream_tokens": False},
    )
    pending = approval_ids(raw)
    rec.exchange(
        "13-conversation-message-while-pending",
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        {"messages": [user("hi, anybody there?")], "stream_tokens": False},
        note="new message on the conversation whose approval is pending",
    )
    rec.exchange(
        "14-agent-route-while-conversation-pending",
        "POST",
        stream,
        {"messages": [user("hi on the agent route")], "stream_tokens": False},
        note="the agent route while a conversation of that agent waits for approval",
    )
    rec.exchange(
        "15-conversation-approve",
        "POST",
        f"/v1/conversations/{conv_id}/messages",
        {
            "messages": [
                {
                    "type": "approval",
                    "approvals": [
                        {"type": "approval", "tool_call_id": i, "approve": True} for i in pending
                    ],
                }
            ],
            "stream_tokens": False,
        },
    )


def approve_or_deny(ids: list[str], *, approve: bool) -> dict[str, Any]:
    """An approval message answering every id in ``ids`` the same way."""
    answers: list[dict[str, Any]] = [
        {"type": "approval", "tool_call_id": i, "approve": approve} for i in ids
    ]
    if not approve:
        for answer in answers:
            answer["reason"] = "Not now, thanks."
    return {"type": "approval", "approvals": answers}


def approval_modes(rec: Recorder, base_url: str) -> None:
    """Deny in steps mode and approve in token mode: which echo comes back in which mode."""
    agent = create_agent(base_url, parallel_tool_calls=True)
    (rec.folder / "agent_id-approval-modes.txt").write_text(agent + "\n")
    stream = f"/v1/agents/{agent}/messages/stream"
    rec.exchange(
        "16-gate-tool",
        "PATCH",
        f"/v1/agents/{agent}/tools/approval/memory_insert",
        {"requires_approval": True},
    )
    _, raw = rec.exchange(
        "17-approval-request-steps",
        "POST",
        stream,
        {"messages": [user("call:memory_insert please")], "stream_tokens": False},
    )
    rec.exchange(
        "18-deny-with-reason-steps",
        "POST",
        stream,
        {"messages": [approve_or_deny(approval_ids(raw), approve=False)], "stream_tokens": False},
    )
    _, raw = rec.exchange(
        "19-approval-request-tokens",
        "POST",
        stream,
        {"messages": [user("call:memory_insert again")], "stream_tokens": True},
    )
    rec.exchange(
        "19-approve-tokens",
        "POST",
        stream,
        {"messages": [approve_or_deny(approval_ids(raw), approve=True)], "stream_tokens": True},
    )
    _, raw = rec.exchange(
        "28-client-tool-request-steps",
        "POST",
        stream,
        {
            "messages": [user('call:get_weather{"city":"Paris"}')],
            "client_tools": [WEATHER],
            "stream_tokens": False,
        },
    )
    rec.exchange(
        "29-client-tool-return-tokens",
        "POST",
        stream,
        {
            "messages": [
                {
                    "type": "approval",
                    "approvals": [
                        {
                            "type": "tool",
                            "tool_call_id": i,
                            "tool_return": "Sunny, 21 degrees",
                            "status": "success",
                        }
                        for i in approval_ids(raw)
                    ],
                }
            ],
            "client_tools": [WEATHER],
            "stream_tokens": True,
        },
    )


def client_tools(rec: Recorder, base_url: str) -> None:
    """Client tools: one call, its return; two parallel calls, both returns."""
    agent = create_agent(base_url, parallel_tool_calls=True)
    (rec.folder / "agent_id-client-tools.txt").write_text(agent + "\n")
    stream = f"/v1/agents/{agent}/messages/stream"
    _, raw = rec.exchange(
        "20-client-tool-request",
        "POST",
        stream,
        {
            "messages": [user('call:get_weather{"city":"Paris"}')],
            "client_tools": [WEATHER],
            "stream_tokens": False,
        },
    )
    pending = approval_ids(raw)
    rec.exchange(
        "21-client-tool-return",
        "POST",
        stream,
        {
            "messages": [
                {
                    "type": "approval",
                    "approvals": [
                        {
                            "type": "tool",
                            "tool_call_id": i,
                            "tool_return": "Sunny, 21 degrees",
                            "status": "success",
                        }
                        for i in pending
                    ],
                }
            ],
            "client_tools": [WEATHER],
            "stream_tokens": False,
        },
    )
    _, raw = rec.exchange(
        "22-client-tools-parallel-request",
        "POST",
        stream,
        {
            "messages": [user('call:get_weather{"city":"Paris"} call:get_weather{"city":"Rome"}')],
            "client_tools": [WEATHER],
            "stream_tokens": True,
        },
    )
    pending = approval_ids(raw)
    rec.exchange(
        "23-client-tools-parallel-return",
        "POST",
        stream,
        {
            "messages": [
                {
                    "type": "approval",
                    "approvals": [
                        {
                            "type": "tool",
                            "tool_call_id": i,
                            "tool_return": f"Weather {n}: sunny",
                            "status": "success",
                        }
                        for n, i in enumerate(pending)
                    ],
                }
            ],
            "client_tools": [WEATHER],
            "stream_tokens": True,
        },
    )
    _, raw = rec.exchange(
        "24-client-tool-error-return-request",
        "POST",
        stream,
        {
            "messages": [user('call:get_weather{"city":"Atlantis"}')],
            "client_tools": [WEATHER],
            "stream_tokens": False,
        },
    )
    rec.exchange(
        "25-client-tool-error-return",
        "POST",
        stream,
        {
            "messages": [
                {
                    "type": "approval",
                    "approvals": [
                        {
                            "type": "tool",
                            "tool_call_id": i,
                            "tool_return": "No such city: Atlantis",
                            "status": "error",
                        }
                        for i in approval_ids(raw)
                    ],
                }
            ],
            "client_tools": [WEATHER],
            "stream_tokens": False,
        },
    )
    rec.exchange(
        "26-message-while-client-tool-pending",
        "POST",
        stream,
        {
            "messages": [user('call:get_weather{"city":"Oslo"}')],
            "client_tools": [WEATHER],
            "stream_tokens": False,
        },
        note="asks for a client tool call and leaves it unanswered",
    )
    rec.exchange(
        "27-new-message-instead-of-tool-return",
        "POST",
        stream,
        {"messages": [user("never mind")], "client_tools": [WEATHER], "stream_tokens": False},
        note="a user message while 26's client tool call waits for its return",
    )


def conversations(rec: Recorder, base_url: str) -> None:
    """Conversations: create, stream, concurrency, 409, resume, list, UA, unknown id."""
    agent = create_agent(base_url, parallel_tool_calls=True)
    (rec.folder / "agent_id-conversations.txt").write_text(agent + "\n")
    ids = []
    for n in (30, 31):
        _, raw = rec.exchange(
            f"{n}-create-conversation", "POST", f"/v1/conversations/?agent_id={agent}", {}
        )
        ids.append((json_of(raw) or {}).get("id"))
    one, two = ids
    _, raw = rec.exchange(
        "32-conversation-tokens-background",
        "POST",
        f"/v1/conversations/{one}/messages",
        {"messages": [user("hi in a conversation")], "stream_tokens": True, "background": True},
    )
    background_run = run_id(raw)
    rec.exchange(
        "33-conversation-steps-foreground",
        "POST",
        f"/v1/conversations/{one}/messages",
        {"messages": [user("hi again")], "stream_tokens": False, "background": False},
    )
    # two conversations of one agent at the same time
    overlapping(
        lambda: rec.exchange(
            "34-two-conversations-a",
            "POST",
            f"/v1/conversations/{one}/messages",
            {"messages": [user("first, delay:4")], "stream_tokens": False},
            note="overlaps 34-b",
        ),
        lambda: rec.exchange(
            "34-two-conversations-b",
            "POST",
            f"/v1/conversations/{two}/messages",
            {"messages": [user("second, delay:2")], "stream_tokens": False},
            note="sent 1 s after 34-a, while it runs",
        ),
        1.0,
    )
    # the same conversation twice at once
    overlapping(
        lambda: rec.exchange(
            "35-same-conversation-a",
            "POST",
            f"/v1/conversations/{one}/messages",
            {"messages": [user("busy, delay:5")], "stream_tokens": False, "background": True},
            note="background run kept busy 5 s",
        ),
        lambda: rec.exchange(
            "35-same-conversation-b",
            "POST",
            f"/v1/conversations/{one}/messages",
            {"messages": [user("me too")], "stream_tokens": False},
            note="sent 1.5 s after 35-a, same conversation",
        ),
        1.5,
    )
    overlapping(
        lambda: rec.exchange(
            "36-same-conversation-foreground-a",
            "POST",
            f"/v1/conversations/{one}/messages",
            {"messages": [user("busy, delay:5")], "stream_tokens": False, "background": False},
        ),
        lambda: rec.exchange(
            "36-same-conversation-foreground-b",
            "POST",
            f"/v1/conversations/{one}/messages",
            {"messages": [user("me too")], "stream_tokens": True, "background": True},
        ),
        1.5,
    )
    # agent route while a conversation of the agent is busy, and vice versa
    overlapping(
        lambda: rec.exchange(
            "37-conversation-busy-a",
            "POST",
            f"/v1/conversations/{one}/messages",
            {"messages": [user("busy, delay:4")], "stream_tokens": False},
        ),
        lambda: rec.exchange(
            "37-agent-route-while-conversation-busy",
            "POST",
            f"/v1/agents/{agent}/messages/stream",
            {"messages": [user("on the agent route")], "stream_tokens": False},
        ),
        1.5,
    )
    overlapping(
        lambda: rec.exchange(
            "38-agent-route-busy-a",
            "POST",
            f"/v1/agents/{agent}/messages/stream",
            {"messages": [user("busy, delay:4")], "stream_tokens": False},
        ),
        lambda: rec.exchange(
            "38-agent-route-busy-b",
            "POST",
            f"/v1/agents/{agent}/messages/stream",
            {"messages": [user("agent route again")], "stream_tokens": False},
        ),
        1.5,
    )
    # resume: conversation stream and run stream
    rec.exchange(
        "39-conversation-stream-resume",
        "POST",
        f"/v1/conversations/{one}/stream",
        {"starting_after": 2},
        note="resume the conversation's latest run after seq_id 2",
    )
    if background_run:
        rec.exchange(
            "40-run-stream-resume",
            "POST",
            f"/v1/runs/{background_run}/stream",
            {"starting_after": 2},
            note="resume 32's background run after seq_id 2",
        )
    # a slow background run read back while it still runs
    seen: dict[str, str] = {}

    def remember_run(chunk: bytes) -> None:
        found = run_id(chunk)
        if found:
            seen.setdefault("run", found)

    def read_back() -> None:
        deadline = time.monotonic() + 10
        while "run" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        rec.exchange(
            "41-conversation-stream-resume-while-running",
            "POST",
            f"/v1/conversations/{two}/stream",
            {"starting_after": 2},
            note="while 41-slow-background runs",
        )
        rec.exchange(
            "41-run-stream-resume-while-running",
            "POST",
            f"/v1/runs/{seen.get('run')}/stream",
            {"starting_after": 0},
            note="while 41-slow-background runs",
        )

    overlapping(
        lambda: rec.exchange(
            "41-slow-background",
            "POST",
            f"/v1/conversations/{two}/messages",
            {"messages": [user("slow:0.5 please")], "stream_tokens": True, "background": True},
            on_frame=remember_run,
        ),
        read_back,
        1.0,
    )
    rec.exchange("42-conversation-messages", "GET", f"/v1/conversations/{one}/messages?limit=50")
    rec.exchange(
        "43-conversation-httpx-ua",
        "POST",
        f"/v1/conversations/{two}/messages",
        {"messages": [user("with python-httpx's UA")], "stream_tokens": False},
        user_agent=HTTPX_UA,
    )
    rec.exchange(
        "44-conversation-streaming-true-httpx-ua",
        "POST",
        f"/v1/conversations/{two}/messages",
        {"messages": [user("streaming true, httpx UA")], "streaming": True},
        user_agent=HTTPX_UA,
    )
    rec.exchange(
        "45-unknown-conversation",
        "POST",
        "/v1/conversations/conv-00000000-0000-4000-8000-000000000000/messages",
        {"messages": [user("hi")], "stream_tokens": False},
    )
    rec.exchange(
        "46-conversation-default-agent-direct",
        "POST",
        "/v1/conversations/default/messages",
        {"messages": [user("default conversation")], "stream_tokens": False, "agent_id": agent},
    )
    rec.exchange("47-list-conversations", "GET", f"/v1/conversations/?agent_id={agent}")


GROUPS = ["approvals", "approval-modes", "client-tools", "conversations", "fields", "failures"]
FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("include-compaction-messages", {"include_compaction_messages": True}),
    ("enable-thinking", {"enable_thinking": True}),
    ("enable-thinking-string", {"enable_thinking": "true"}),
    ("override-system", {"override_system": "You are a terse test agent."}),
    ("include-return-message-types", {"include_return_message_types": ["assistant_message"]}),
    ("unknown-field", {"surely_not_a_field": 1}),
]


def fields(rec: Recorder, urls: dict[str, tuple[str, str]]) -> None:
    """The newer request fields on 0.16.8, and what 0.11.7 and 0.6.14 do with them."""
    for version, (base_url, agent) in urls.items():
        prefix = {"0.16.8": 50, "0.11.7": 60, "0.6.14": 70}[version]
        for n, (name, extra) in enumerate(FIELDS):
            if version == "0.6.14":
                body: dict[str, Any] = {
                    "messages": [{"role": "user", "text": f"hi ({name})"}],
                    "stream_tokens": False,
                    **extra,
                }
            else:
                body = {"messages": [user(f"hi ({name})")], "stream_tokens": False, **extra}
            rec.exchange(
                f"{prefix + n}-{version}-{name}",
                "POST",
                f"/v1/agents/{agent}/messages/stream",
                body,
                base_url=base_url,
            )


def failures(rec: Recorder, base_url: str) -> None:
    """The LLM provider failing, in steps, tokens and background mode."""
    agent = create_agent(base_url, parallel_tool_calls=True)
    stream = f"/v1/agents/{agent}/messages/stream"
    rec.exchange(
        "80-llm-error-steps",
        "POST",
        stream,
        {"messages": [user("please trigger-llm-error now")], "stream_tokens": False},
    )
    rec.exchange(
        "81-llm-error-tokens-background",
        "POST",
        stream,
        {
            "messages": [user("please trigger-llm-error now (tokens)")],
            "stream_tokens": True,
            "background": True,
        },
    )


def main() -> int:
    """Capture every scenario (or those named) into the folder given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=GROUPS,
    )
    args = parser.parse_args()
    urls: dict[str, tuple[str, str]] = {}
    for version in ("0.16.8", "0.11.7", "0.6.14"):
        key = version.replace(".", "_")
        url, agent = (
            os.environ.get(f"LETTA_LIVE_URL_{key}"),
            os.environ.get(f"LETTA_LIVE_AGENT_{key}"),
        )
        if url and agent:
            urls[version] = (url, agent)
    if "0.16.8" not in urls:
        sys.stderr.write("no LETTA_LIVE_URL_0_16_8: run under scripts/letta_lab.py run\n")
        return 2
    base_url = urls["0.16.8"][0]
    rec = Recorder(args.folder, base_url)
    chosen = set(args.only or GROUPS)
    if "approvals" in chosen:
        server_tool_approvals(rec, base_url)
    if "approval-modes" in chosen:
        approval_modes(rec, base_url)
    if "client-tools" in chosen:
        client_tools(rec, base_url)
    if "conversations" in chosen:
        conversations(rec, base_url)
    if "fields" in chosen:
        fields(rec, urls)
    if "failures" in chosen:
        failures(rec, base_url)
    # index.tsv: one line per exchange; a re-recorded one replaces its old line
    index = args.folder / "index.tsv"
    lines = {}
    if index.exists():
        lines = {line.split("\t", 1)[0]: line for line in index.read_text().splitlines()}
    for name, method, path, status, note in rec.notes:
        lines[name] = f"{name}\t{method} {path}\t{status}\t{note}"
    index.write_text("".join(lines[name] + "\n" for name in sorted(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
