"""A deterministic fake of the OpenAI API, for driving real Letta servers offline.

Standard library only. It listens on ``127.0.0.1:8999`` (``FAKE_LLM_PORT``) and
answers what a Letta server asks of its LLM provider:

* ``GET /v1/models``: a fixed model list.
* ``POST /v1/embeddings``: small vectors derived from a hash of the text.
* ``POST /v1/chat/completions``, streamed or not. The decision depends on the
  request only, so the same conversation always gets the same answer:

  - the last message contains ``trigger-llm-error``: HTTP 500 (a provider outage);
  - a named function is forced by ``tool_choice``: that function;
  - the last message is a tool result or a heartbeat: the final answer;
  - the user writes ``call:<tool>`` (optionally followed by JSON arguments,
    ``call:get_weather{"city":"Paris"}``): that tool, if the request offers it
    (client tools, approval-gated tools, any server tool). Several markers make
    several calls in one turn, unless the request says
    ``"parallel_tool_calls": false`` (then the first, as OpenAI would);
  - the request offers tools that are not Letta's own (Letta's own are listed
    in ``LETTA_TOOLS``; the others are the client tools a caller sends, or a
    user's server tools). Prompts written for any chat model (langchain-tests'
    suite has no ``call:`` markers) must still make a call, so:

    * the user writes ``name(args)`` for such a tool
      (``"What is the value of magic_function(3)? Use the tool."``): that
      call, its comma-separated values (JSON literals where they parse, else
      strings) given to the schema's properties in order (``{"input": 3}``;
      ``magic_function_no_args()`` gives ``{}``); properties left without a
      value are made as below. Several such calls in the text are several
      calls in one turn, as with ``call:``;
    * else, when exactly one such tool is offered: a call of it, every
      property (required or not) made from the user's text by its schema
      (:func:`from_text`): numbers the first number in the text, integers
      the first whole one (else 0), booleans true, strings the first quoted phrase
      ('…' or "…"), else the last capitalised word that is not
      the text's first word (else the whole text), enums their first value,
      arrays ``[]``, objects ``{}``. "Using the tool, generate a Pirate
      greeting." gives ``{"answer_style": "Pirate"}``, "What is the weather
      in SF?" gives ``{"location": "SF"}``;
  - the user says "remember": a memory tool (``core_memory_append`` and the like);
  - the user says "search": ``conversation_search`` for "hello";
  - otherwise: the final answer.

  The user's text is read inside Letta's packing
  (``{"type": "user_message", "message": ...}``) where Letta packs it.

  Pacing, read from the latest user message (so it also holds for the calls after
  a tool result): ``delay:<s>`` waits that long before answering (at most 30 s),
  to keep a run busy; ``slow:<s>`` waits that long between streamed chunks (at
  most 5 s), to cut a stream while its run still goes on.

  The final answer is ``send_message(message="Hello from the fake model")`` where
  the agent has ``send_message``, else plain assistant text. After the result of
  a tool that is not Letta's own, it quotes the result, so that a test can see
  the result reached the model: ``Hello from the fake model (tool said: <the
  result's first 60 characters>)`` (Letta's ``{"message": ...}`` packing taken
  off). Tool arguments get ``inner_thoughts`` / ``thinking`` where Letta put
  them in the schema, and ``request_heartbeat`` (true except for
  ``send_message``), so a memory edit takes two steps. Every connection is
  closed after one answer (keep-alive made some Letta releases stall).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FINAL_TEXT = "Hello from the fake model"
THOUGHTS = "thinking..."
CREATED = 1700000000
EMBED_DIM = 1536
MEMORY_TOOLS = (
    "core_memory_append",
    "memory_insert",
    "memory_append",
    "archival_memory_insert",
    "memory_replace",
    "core_memory_replace",
)
# Letta's own tools, every release from 0.6.14 to 0.16.8 (the lists in
# letta/constants.py: base, memory tools of each generation, sleeptime, voice,
# multi-agent, built-in and file tools). The rules for the tools a caller brings
# (client tools, a user's server tools) leave these alone, so that an agent's
# memory tools never count as "the one tool offered".
LETTA_TOOLS = frozenset(
    {
        "send_message",
        "conversation_search",
        "conversation_search_date",
        "archival_memory_insert",
        "archival_memory_search",
        "core_memory_append",
        "core_memory_replace",
        "memory",
        "memory_apply_patch",
        "memory_insert",
        "memory_replace",
        "memory_rethink",
        "memory_finish_edits",
        "rethink_memory",
        "finish_rethinking_memory",
        "rethink_user_memory",
        "store_memories",
        "search_memory",
        "send_message_to_agent_and_wait_for_reply",
        "send_message_to_agent_async",
        "send_message_to_agents_matching_tags",
        "run_code",
        "run_code_with_tools",
        "web_search",
        "fetch_webpage",
        "open_files",
        "grep_files",
        "semantic_search_files",
    }
)
# Properties Letta adds to a tool's schema for its own loop, not the tool's.
INJECTED = ("inner_thoughts", "thinking", "request_heartbeat")
QUOTE_LIMIT = 60
ARGUMENT_DEFAULTS: dict[str, Any] = {
    "label": "human",
    "content": "The user likes tea.",
    "new_str": "The user likes tea.",
    "new_string": "The user likes tea.",
    "old_str": "",
    "text": "The user likes tea.",
    "query": "hello",
    "message": FINAL_TEXT,
    "insert_line": -1,
    "page": 0,
    "start": 0,
    # conversation_search (0.11): optional filters, left out as a model would
    "roles": None,
    "limit": None,
    "start_date": None,
    "end_date": None,
}
TYPE_DEFAULTS: dict[str, Any] = {
    "string": "x",
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "object": {},
}
# Pieces shaped like GPT tokens, so that token streams look like real ones.
QUOTED = re.compile(r"""(['"])([^'"]+)\1""")
CALL = re.compile(r"call:([A-Za-z_][A-Za-z0-9_\-]*)")
# name(args) as a user writes a call in prose: "the value of magic_function(3)"
NAMED_CALL = re.compile(r"(?<![A-Za-z0-9_:])([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)")
NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_'\-]*")
TOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z_]+| ?[0-9]{1,3}| ?[^\sA-Za-z0-9_]+|\s+")

Call = tuple[str, dict[str, Any]]  # a tool's name and its arguments

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_id(prefix: str) -> str:
    """A sequential id: the same run of requests always gets the same ids."""
    with _ids_lock:
        return f"{prefix}{next(_ids):06d}"


def text_of(content: Any) -> str:
    """The text of a chat message's content (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text") or part.get("content") or "")
            if isinstance(part, dict)
            else str(part)
            for part in content
        )
    return str(content)


def offered_tools(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The functions the request offers, by name, with their JSON schemas."""
    tools: dict[str, dict[str, Any]] = {}
    for tool in [*(request.get("tools") or []), *(request.get("functions") or [])]:
        function = tool.get("function") or tool
        if function.get("name"):
            tools[function["name"]] = function.get("parameters") or {}
    return tools


def arguments(name: str, schema: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a call of ``name`` that satisfy its schema."""
    properties = schema.get("properties") or {}
    args: dict[str, Any] = {
        key: THOUGHTS for key in ("inner_thoughts", "thinking") if key in properties
    }
    for key in schema.get("required") or []:
        if key in args or key == "request_heartbeat":
            continue
        spec = properties.get(key) or {}
        if key in overrides:
            args[key] = overrides[key]
        elif spec.get("enum"):
            args[key] = spec["enum"][0]
        elif key in ARGUMENT_DEFAULTS:
            args[key] = ARGUMENT_DEFAULTS[key]
        else:
            kind = spec.get("type")
            if isinstance(kind, list):
                kind = next((k for k in kind if k != "null"), "string")
            args[key] = TYPE_DEFAULTS.get(kind, "x")
    args.update({key: value for key, value in overrides.items() if key in properties})
    if "request_heartbeat" in properties:
        args["request_heartbeat"] = name != "send_message"
    return args


def requested_calls(text: str, tools: dict[str, dict[str, Any]]) -> list[Call]:
    """The ``call:<tool>[{json}]`` markers in ``text`` whose tool is offered.

    Explicit JSON arguments win over the defaults, even for names the schema does
    not list, so a test can send exactly what it wants.
    """
    calls: list[Call] = []
    for match in CALL.finditer(text):
        name = match.group(1)
        if name not in tools:
            continue
        explicit: Any = {}
        rest = text[match.end() :]
        if rest.startswith("{"):
            with contextlib.suppress(ValueError):
                explicit, _ = json.JSONDecoder().raw_decode(rest)
        args = arguments(name, tools[name], {})
        if isinstance(explicit, dict):
            args.update(explicit)
        calls.append((name, args))
    return calls


def unpacked(text: str) -> str:
    """``text`` without Letta's JSON packing, else as it is.

    Letta packs user messages (``{"type": "user_message", "message": ...}``) and
    tool results (``{"status": ..., "message": ...}``); the rules read the words.
    """
    if text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            packed = json.loads(text)
            if isinstance(packed, dict) and isinstance(packed.get("message"), str):
                return packed["message"]
    return text


def caller_tools(tools: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The offered tools that are not Letta's own (client tools, a user's tools)."""
    return {name: schema for name, schema in tools.items() if name not in LETTA_TOOLS}


def kind_of(spec: dict[str, Any]) -> str | None:
    """A property's JSON type, the first that is not null (``type`` lists, ``anyOf``)."""
    kind = spec.get("type")
    if isinstance(kind, list):
        return next((k for k in kind if k != "null"), None)
    if isinstance(kind, str):
        return kind
    for branch in spec.get("anyOf") or spec.get("oneOf") or []:
        if isinstance(branch, dict) and kind_of(branch) not in (None, "null"):
            return kind_of(branch)
    return None


def from_text(spec: dict[str, Any], text: str) -> Any:
    """A value for a property of JSON schema ``spec``, read from the user's ``text``.

    Deterministic and crude, but enough for prompts written for real models:
    numbers come from the first number in the text (integers from the first
    whole one), strings from its first quoted phrase ("a customer named '你好啊集团'"),
    else its last capitalised word that is not its first word ("generate a Pirate
    greeting", "the weather in SF"), since such a word is usually the subject.
    """
    if spec.get("enum"):
        return spec["enum"][0]
    kind = kind_of(spec)
    if kind in ("integer", "number"):
        numbers = NUMBER.findall(text)
        if kind == "integer":  # the first whole number: "2.5 and 4" gives 4
            numbers = [value for value in numbers if "." not in value]
        if not numbers:
            return 0
        return float(numbers[0]) if "." in numbers[0] else int(numbers[0])
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    quoted = QUOTED.search(text)
    if quoted:
        return quoted.group(2)
    words = WORD.findall(text)
    capitalised = [word for word in words[1:] if word[0].isupper()]
    return capitalised[-1] if capitalised else text


def literal(piece: str) -> Any:
    """One positional value of ``name(args)``: a JSON literal where it parses, else text."""
    piece = piece.strip()
    try:
        return json.loads(piece)
    except ValueError:
        return piece.strip("'\"")


def positional(inner: str) -> list[Any]:
    """The values between the parentheses of ``name(args)``, in order."""
    if not inner.strip():
        return []
    try:
        values = json.loads(f"[{inner}]")
    except ValueError:
        return [literal(piece) for piece in inner.split(",")]
    return values if isinstance(values, list) else [values]


def schema_call(name: str, schema: dict[str, Any], text: str, given: list[Any] | None) -> Call:
    """A call of a caller's tool, its arguments from ``given`` and the user's ``text``.

    ``given`` (the values of ``name(args)``, ``None`` when the text names no
    call) go to the properties in order; the properties they do not reach are
    made from the text (:func:`from_text`), all of them without ``given``, only
    the required ones with it, so that ``magic_function_no_args()`` stays ``{}``.
    The properties Letta adds for its own loop get what :func:`arguments` gives.
    """
    properties = {
        key: spec for key, spec in (schema.get("properties") or {}).items() if key not in INJECTED
    }
    required = set(schema.get("required") or [])
    args: dict[str, Any] = dict(zip(properties, given or [], strict=False))
    for key, spec in properties.items():
        if key not in args and (given is None or key in required):
            args[key] = from_text(spec if isinstance(spec, dict) else {}, text)
    injected = {key: value for key, value in arguments(name, schema, {}).items() if key in INJECTED}
    return name, {**injected, **args}


def caller_calls(text: str, tools: dict[str, dict[str, Any]]) -> list[Call]:
    """The calls a prompt without ``call:`` markers asks of the caller's tools.

    ``name(args)`` for each caller's tool the text names (in the text's order),
    else a call of the one caller's tool when exactly one is offered, else none.
    """
    offered = caller_tools(tools)
    calls = [
        schema_call(match.group(1), offered[match.group(1)], text, positional(match.group(2)))
        for match in NAMED_CALL.finditer(text)
        if match.group(1) in offered
    ]
    if not calls and len(offered) == 1:
        ((name, schema),) = offered.items()
        calls = [schema_call(name, schema, text, None)]
    return calls


def tool_result_quote(messages: list[dict[str, Any]]) -> str | None:
    """The start of the last message's text when it is the result of a caller's tool.

    The tool's name is that of the assistant's call with the result's
    ``tool_call_id`` (or the result's own ``name``); Letta's own tools give None,
    so their turns keep the plain final answer.
    """
    last = messages[-1] if messages else {}
    if last.get("role") not in ("tool", "function"):
        return None
    name = last.get("name")
    for message in reversed(messages[:-1]):
        for call in message.get("tool_calls") or []:
            if call.get("id") == last.get("tool_call_id"):
                name = (call.get("function") or {}).get("name") or name
    if not name or name in LETTA_TOOLS:
        return None
    return unpacked(text_of(last.get("content")))[:QUOTE_LIMIT]


def last_user_text(request: dict[str, Any]) -> str:
    """The latest user message's text (pacing markers live there)."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def marker(text: str, key: str, cap: float) -> float:
    """The number after ``key:`` in ``text``, at most ``cap`` (0 when absent)."""
    found = re.search(key + r":([0-9]+(?:\.[0-9]+)?)", text)
    return min(float(found.group(1)), cap) if found else 0.0


def decide(request: dict[str, Any]) -> list[Call] | str:
    """The answer to a chat request: the tool calls to make, or a text."""
    decision = decide_one(request)
    return [decision] if isinstance(decision, tuple) else decision


def decide_one(request: dict[str, Any]) -> list[Call] | Call | str:
    """The answer as one call, several calls (``call:`` markers, ``name(args)``) or a text."""
    tools = offered_tools(request)
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    last_text = text_of(last.get("content"))
    choice = request.get("tool_choice")
    forced = (
        (choice.get("function") or {}).get("name") or choice.get("name")
        if isinstance(choice, dict)
        else None
    )

    quote = tool_result_quote(messages)
    text = FINAL_TEXT if quote is None else f"{FINAL_TEXT} (tool said: {quote})"
    user_text = unpacked(last_text) if last.get("role") == "user" else ""

    def final() -> Call | str:
        if "send_message" in tools:
            return "send_message", arguments(
                "send_message", tools["send_message"], {"message": text}
            )
        if choice == "required" and tools:
            name = next(iter(tools))
            return name, arguments(name, tools[name], {})
        return text

    if forced in tools:
        if forced == "send_message":
            return final()
        if forced in caller_tools(tools):
            return schema_call(forced, tools[forced], user_text, None)
        return forced, arguments(forced, tools[forced], {})
    if not tools:
        return FINAL_TEXT  # summaries, titles
    after_tool = last.get("role") in ("tool", "function") or "heartbeat" in last_text.lower()[:200]
    if last.get("role") == "user" and '"type": "user_message"' in last_text:
        after_tool = False
    if after_tool:
        return final()
    if last.get("role") == "user":
        calls = requested_calls(last_text, tools)
        if calls:
            return calls[:1] if request.get("parallel_tool_calls") is False else calls
        calls = caller_calls(user_text, tools)
        if calls:
            return calls[:1] if request.get("parallel_tool_calls") is False else calls
    lowered = last_text.lower()
    if "remember" in lowered:
        for name in MEMORY_TOOLS:
            if name in tools:
                return name, arguments(name, tools[name], {})
    if "search" in lowered and "conversation_search" in tools:
        # "query" is optional in 0.16.8's schema: name it, as a model would
        return "conversation_search", arguments(
            "conversation_search", tools["conversation_search"], {"query": "hello"}
        )
    return final()


def usage(request: dict[str, Any]) -> dict[str, int]:
    """Token counts derived from the prompt's length."""
    prompt = sum(len(text_of(m.get("content"))) for m in request.get("messages") or []) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": 10, "total_tokens": prompt + 10}


class Handler(BaseHTTPRequestHandler):
    """One request per connection; JSON or an OpenAI-style event stream."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Log to stderr with a prefix."""
        sys.stderr.write("fakellm: " + (format % args) + "\n")

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        """Answer with JSON and close the connection."""
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Models list and a health answer."""
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/models"):
            names = (
                "gpt-4o-mini",
                "fake-model",
                "text-embedding-3-small",
                "text-embedding-ada-002",
            )
            data = [
                {"id": n, "object": "model", "created": CREATED, "owned_by": "fake"} for n in names
            ]
            self.send_json(200, {"object": "list", "data": data})
        elif path in ("", "/health", "/v1"):
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": {"message": f"not found: {self.path}"}})

    def do_POST(self) -> None:
        """Embeddings and chat completions."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_json(400, {"error": {"message": "bad json"}})
            return
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/embeddings"):
            self.embeddings(request)
        elif path.endswith("/chat/completions"):
            self.chat(request)
        else:
            self.send_json(404, {"error": {"message": f"not found: {self.path}"}})

    def embeddings(self, request: dict[str, Any]) -> None:
        """Deterministic vectors from a hash of each input."""
        inputs = request.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs or []
        dim = int(request.get("dimensions") or EMBED_DIM)
        data = []
        for index, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            vector = [digest[j % len(digest)] / 255.0 - 0.5 for j in range(dim)]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        model = request.get("model", "text-embedding-3-small")
        usage_ = {"prompt_tokens": 1, "total_tokens": 1}
        self.send_json(200, {"object": "list", "data": data, "model": model, "usage": usage_})

    def chat(self, request: dict[str, Any]) -> None:
        """A chat completion, streamed when asked."""
        messages = request.get("messages") or []
        if messages and "trigger-llm-error" in text_of(messages[-1].get("content")):
            error = {"message": "fake upstream failure", "type": "server_error", "code": None}
            self.send_json(500, {"error": error})
            return
        pacing = last_user_text(request)
        delay, pause = marker(pacing, "delay", 30.0), marker(pacing, "slow", 5.0)
        if delay:
            time.sleep(delay)
        decision = decide(request)
        model = request.get("model", "gpt-4o-mini")
        completion_id = next_id("chatcmpl-fake")
        calls = [
            {
                "id": next_id("call_fake"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args, separators=(",", ":"))},
            }
            for name, args in (decision if isinstance(decision, list) else [])
        ]
        if not request.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
            if not calls:
                message = {"role": "assistant", "content": decision}
            choice = {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if calls else "stop",
            }
            self.send_json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model,
                    "choices": [choice],
                    "usage": usage(request),
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()

        def send(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> None:
            frame = {"id": completion_id, "object": "chat.completion.chunk", "created": CREATED}
            frame["model"] = model
            frame["choices"] = (
                [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            )
            self.wfile.write(b"data: " + json.dumps({**frame, **extra}).encode() + b"\n\n")
            self.wfile.flush()
            if pause:
                time.sleep(pause)

        if calls:
            for index, call in enumerate(calls):
                head = {**call, "index": index, "function": {**call["function"], "arguments": ""}}
                first: dict[str, Any] = {"tool_calls": [head]}
                send({"role": "assistant", "content": None, **first} if index == 0 else first)
                for piece in TOKEN.findall(call["function"]["arguments"]):
                    send({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            send({}, "tool_calls")
        else:
            send({"role": "assistant", "content": ""})
            for piece in TOKEN.findall(str(decision)):
                send({"content": piece})
            send({}, "stop")
        if (request.get("stream_options") or {}).get("include_usage"):
            send(None, usage=usage(request))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main() -> None:
    """Serve until interrupted."""
    port = int(os.environ.get("FAKE_LLM_PORT", "8999"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    sys.stderr.write(f"fakellm listening on http://127.0.0.1:{port}\n")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
