"""Request bodies in the three dialects, and choosing a dialect from a version or a 422."""

from __future__ import annotations

import json
import uuid

import pytest

from langchain_letta._wire.requests import (
    FEATURES_SINCE,
    VERSIONED_FIELDS,
    Dialect,
    OutgoingMessage,
    StreamRequest,
    build_body,
    check_fields,
    dialect_after_rejection,
    dialect_for_version,
    has_feature,
    supports_background,
)
from langchain_letta.errors import LettaInvalidRequestError, LettaUnsupportedFeatureError
from tests.conftest import CAPTURES

DEFAULT_CONFIG = {
    "use_assistant_message": True,
    "assistant_message_tool_name": "send_message",
    "assistant_message_tool_kwarg": "message",
}


def _request(content: str | list[dict[str, object]] = "hi", **options: object) -> StreamRequest:
    message = OutgoingMessage(content=content, otid="otid-1")
    return StreamRequest(messages=[message], **options)  # type: ignore[arg-type]


def _all_options() -> StreamRequest:
    return StreamRequest(
        messages=[OutgoingMessage(content="hi", name="bob", otid="otid-1")],
        stream_tokens=False,
        use_assistant_message=False,
        assistant_message_tool_name="reply",
        assistant_message_tool_kwarg="text",
        include_pings=False,
        background=True,
        max_steps=7,
        include_return_message_types=["assistant_message", "tool_call_message"],
        override_model="openai/gpt-4o-mini",
        enable_thinking=False,
        override_system="You are terse.",
        include_compaction_messages=True,
    )


# --- seed (0.6.10 to 0.6.14) --------------------------------------------------------------


@pytest.mark.parametrize(
    "capture",
    [
        "0.6.14/memgpt_agent/01-stream-steps.request.json",
        "0.6.14/memgpt_agent/02-stream-tokens.request.json",
        "0.6.14/memgpt_agent/03-tool-call-steps.request.json",
        "0.6.14/memgpt_agent/04-tool-call-tokens.request.json",
    ],
)
def test_seed_body_is_the_captured_body_plus_stream_tokens_in_config(capture: str) -> None:
    sent = json.loads((CAPTURES / capture).read_text())
    [captured_message] = sent["messages"]
    request = StreamRequest(
        messages=[OutgoingMessage(content=captured_message["text"])],
        stream_tokens=sent["stream_tokens"],
    )
    expected = {**sent, "config": {**sent["config"], "stream_tokens": sent["stream_tokens"]}}
    assert build_body(request, "seed") == expected


def test_seed_body_exact() -> None:
    assert build_body(_request(stream_tokens=True), "seed") == {
        "messages": [{"role": "user", "text": "hi"}],
        "config": {**DEFAULT_CONFIG, "stream_tokens": True},
        "stream_tokens": True,
    }


def test_seed_body_carries_no_otid_and_no_content() -> None:
    [message] = build_body(_request(), "seed")["messages"]
    assert "otid" not in message
    assert "content" not in message


def test_seed_body_nested_config_with_every_option() -> None:
    assert build_body(_all_options(), "seed") == {
        "messages": [{"role": "user", "text": "hi", "name": "bob"}],
        "config": {
            "use_assistant_message": False,
            "assistant_message_tool_name": "reply",
            "assistant_message_tool_kwarg": "text",
            "stream_tokens": False,
        },
        "stream_tokens": False,
    }


def test_seed_body_joins_text_parts() -> None:
    parts = [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "Bob"}]
    [message] = build_body(_request(parts), "seed")["messages"]
    assert message == {"role": "user", "text": "Hello, Bob"}


def test_seed_body_keeps_system_role() -> None:
    request = StreamRequest(messages=[OutgoingMessage(role="system", content="note")])
    assert build_body(request, "seed")["messages"] == [{"role": "system", "text": "note"}]


def test_seed_body_keeps_several_messages_in_order() -> None:
    request = StreamRequest(
        messages=[OutgoingMessage(content="one"), OutgoingMessage(content="two")]
    )
    texts = [m["text"] for m in build_body(request, "seed")["messages"]]
    assert texts == ["one", "two"]


def test_seed_rejects_image_parts() -> None:
    parts = [{"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}}]
    with pytest.raises(ValueError, match=r"0\.6\.15.*image"):
        build_body(_request(parts), "seed")


def test_seed_rejects_text_mixed_with_an_image() -> None:
    parts = [{"type": "text", "text": "look"}, {"type": "image", "source": {}}]
    with pytest.raises(ValueError, match="image"):
        build_body(_request(parts), "seed")


# --- transitional (0.6.15, 0.6.16) ------------------------------------------------------


def test_transitional_body_exact() -> None:
    assert build_body(_request(stream_tokens=False), "transitional") == {
        "messages": [{"role": "user", "content": "hi"}],
        "config": DEFAULT_CONFIG,
        "stream_tokens": False,
    }


def test_transitional_body_with_every_option_ignores_current_only_flags() -> None:
    assert build_body(_all_options(), "transitional") == {
        "messages": [{"role": "user", "content": "hi", "name": "bob"}],
        "config": {
            "use_assistant_message": False,
            "assistant_message_tool_name": "reply",
            "assistant_message_tool_kwarg": "text",
        },
        "stream_tokens": False,
    }


def test_transitional_body_keeps_content_parts_including_images() -> None:
    parts = [{"type": "text", "text": "look"}, {"type": "image", "source": {"type": "url"}}]
    [message] = build_body(_request(parts), "transitional")["messages"]
    assert message == {"role": "user", "content": parts}


# --- current (0.6.17 onward) ------------------------------------------------------------


def test_current_body_minimal_exact() -> None:
    assert build_body(_request(), "current") == {
        "messages": [{"role": "user", "content": "hi", "otid": "otid-1"}],
        "stream_tokens": True,
        "include_pings": True,
    }


def test_current_body_with_every_option_at_top_level() -> None:
    assert build_body(_all_options(), "current") == {
        "messages": [{"role": "user", "content": "hi", "name": "bob", "otid": "otid-1"}],
        "stream_tokens": False,
        "include_pings": False,
        "background": True,
        "use_assistant_message": False,
        "assistant_message_tool_name": "reply",
        "assistant_message_tool_kwarg": "text",
        "max_steps": 7,
        "include_return_message_types": ["assistant_message", "tool_call_message"],
        "override_model": "openai/gpt-4o-mini",
        "enable_thinking": "false",  # a string field on the server: a JSON bool gets a 422
        "override_system": "You are terse.",
        "include_compaction_messages": True,
    }


def test_current_body_has_no_config() -> None:
    assert "config" not in build_body(_all_options(), "current")


def test_current_body_keeps_content_parts() -> None:
    parts = [{"type": "text", "text": "look"}, {"type": "image", "source": {"type": "url"}}]
    [message] = build_body(_request(parts), "current")["messages"]
    assert message["content"] == parts


def test_default_otid_is_a_distinct_uuid_per_message() -> None:
    first, second = OutgoingMessage(content="a"), OutgoingMessage(content="b")
    assert uuid.UUID(first.otid).version == 4
    assert first.otid != second.otid


def test_otid_stays_the_same_when_the_body_is_built_again() -> None:
    request = StreamRequest(messages=[OutgoingMessage(content="hi")])
    first = build_body(request, "current")["messages"][0]["otid"]
    second = build_body(request, "current")["messages"][0]["otid"]
    assert first == second


def test_building_a_body_does_not_change_the_request() -> None:
    request = _all_options()
    before = request.model_dump()
    for dialect in ("seed", "transitional", "current"):
        build_body(request, dialect)
    assert request.model_dump() == before


# --- dialect_for_version ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "dialect"),
    [
        ("0.6.9", "seed"),
        ("0.6.10", "seed"),
        ("0.6.14", "seed"),
        ("0.6.15", "transitional"),
        ("0.6.16", "transitional"),
        ("0.6.17", "current"),
        ("0.6.50", "current"),
        ("0.11.7", "current"),
        ("0.16.8", "current"),
        ("1.0.0", "current"),
        ("v0.6.14", "seed"),
        ("0.6.14rc1", "seed"),
        ("garbage", "current"),
        ("", "current"),
        ("0.6", "current"),
        (None, "current"),
    ],
)
def test_dialect_for_version(version: str | None, dialect: Dialect) -> None:
    assert dialect_for_version(version) == dialect


def test_dialect_for_version_compares_numbers_not_strings() -> None:
    assert dialect_for_version("0.6.100") == "current"
    assert dialect_for_version("0.10.0") == "current"


# --- dialect_after_rejection ------------------------------------------------------------


def _fastapi_422(loc: list[object], given: dict[str, object]) -> str:
    """A 422 body as servers up to 0.12 send it: FastAPI's list of errors."""
    error = {"type": "missing", "loc": loc, "msg": "Field required", "input": given}
    return json.dumps({"detail": [error]}, separators=(",", ":"))


def _repr_422(loc: tuple[object, ...], given: dict[str, object]) -> str:
    """A 422 body as servers from 0.13 send it: ``repr`` of the error list, as a string."""
    error = {"type": "missing", "loc": loc, "msg": "Field required", "input": given}
    return json.dumps({"trace_id": "", "detail": repr([error])}, separators=(",", ":"))


SEED_MESSAGE = {"role": "user", "text": "hi"}
CURRENT_MESSAGE = {"role": "user", "content": "hi", "otid": "otid-1"}


def test_missing_content_in_the_0_16_8_repr_string_asks_for_current() -> None:
    body = (
        '{"trace_id":"","detail":"[{\'type\': \'missing\', '
        "'loc': ('body', 'messages', 0, 'content'), 'msg': 'Field required', "
        "'input': {'role': 'user', 'text': 'hi'}}]\"}"
    )
    assert json.loads(body)["detail"].startswith("[{'type': 'missing', 'loc': ('body'")
    assert dialect_after_rejection(body, "seed") == "current"


@pytest.mark.parametrize(
    "body",
    [
        _fastapi_422(["body", "messages", 0, "content"], SEED_MESSAGE),
        _repr_422(("body", "messages", 0, "content"), SEED_MESSAGE),
        _fastapi_422(["body", "messages", 0, "message", "content"], SEED_MESSAGE),
        _repr_422(("body", "messages", 0, "message", "content"), SEED_MESSAGE),
        _repr_422(("body", "messages", 2, "MessageCreate", "content"), SEED_MESSAGE),
    ],
    ids=["list", "repr", "list-union-tag", "repr-union-tag", "repr-class-tag"],
)
def test_missing_content_after_a_seed_body_asks_for_current(body: str) -> None:
    assert dialect_after_rejection(body, "seed") == "current"


@pytest.mark.parametrize(
    "body",
    [
        _fastapi_422(["body", "messages", 0, "text"], CURRENT_MESSAGE),
        _repr_422(("body", "messages", 0, "text"), CURRENT_MESSAGE),
    ],
    ids=["list", "repr"],
)
@pytest.mark.parametrize("sent", ["current", "transitional"])
def test_missing_text_asks_for_seed(body: str, sent: Dialect) -> None:
    assert dialect_after_rejection(body, sent) == "seed"


def test_missing_text_after_a_seed_body_gives_none() -> None:
    body = _fastapi_422(["body", "messages", 0, "text"], SEED_MESSAGE)
    assert dialect_after_rejection(body, "seed") is None


def test_missing_content_after_a_current_body_gives_none() -> None:
    body = _repr_422(("body", "messages", 0, "content"), CURRENT_MESSAGE)
    assert dialect_after_rejection(body, "current") is None


def test_fastapi_list_with_spaces_after_commas() -> None:
    body = json.dumps(
        {"detail": [{"loc": ["body", "messages", 0, "text"], "msg": "Field required"}]},
        indent=None,
        separators=(", ", ": "),
    )
    assert dialect_after_rejection(body, "current") == "seed"


@pytest.mark.parametrize(
    "capture",
    [
        "0.6.14/memgpt_agent/07-invalid-body.txt",
        "0.6.14/memgpt_agent/08-missing-messages.txt",
        "0.11.7/memgpt_agent/07-invalid-body.txt",
        "0.11.7/memgpt_agent/08-missing-messages.txt",
        "0.16.8/memgpt_v2_agent/07-invalid-body.txt",
        "0.16.8/memgpt_v2_agent/08-missing-messages.txt",
    ],
)
@pytest.mark.parametrize("sent", ["seed", "transitional", "current"])
def test_real_422_that_names_no_message_field_gives_none(capture: str, sent: Dialect) -> None:
    assert dialect_after_rejection((CAPTURES / capture).read_text(), sent) is None


@pytest.mark.parametrize(
    "body",
    [
        '{"detail":"Messages must not be empty"}',
        _fastapi_422(["body", "messages", 0, "role"], SEED_MESSAGE),
        _repr_422(("body", "messages", 0, "otid"), CURRENT_MESSAGE),
        "",
        "<html>422</html>",
    ],
    ids=["explicit", "role", "otid", "empty", "html"],
)
def test_422_about_another_field_gives_none(body: str) -> None:
    assert dialect_after_rejection(body, "seed") is None
    assert dialect_after_rejection(body, "current") is None


# --- which release has which field --------------------------------------------------------

FIRST_RELEASE = {
    # the first tag whose letta/schemas/letta_request.py has the field, and the tag before it
    "include_return_message_types": ("0.8.3", "0.8.2"),
    "enable_thinking": ("0.10.0", "0.9.1"),
    "include_compaction_messages": ("0.16.5", "0.16.4"),
    "override_system": ("0.16.7", "0.16.6"),
}
VALUES: dict[str, object] = {
    "include_return_message_types": ["assistant_message"],
    "enable_thinking": True,
    "include_compaction_messages": True,
    "override_system": "You are terse.",
}


def test_every_versioned_field_has_its_first_release() -> None:
    assert set(VERSIONED_FIELDS) == set(FIRST_RELEASE) == set(VALUES)
    assert set(FEATURES_SINCE) == set(VERSIONED_FIELDS) | {
        "background",
        "conversation_id",
        "override_model",
        "approvals",
        "client_tools",
        "message_by_id",
        "summary_search",
        "agent_direct",
        "request_token",
        "run_tracking",
        "run_filters",
    }


@pytest.mark.parametrize("field", sorted(FIRST_RELEASE))
def test_a_field_is_sent_from_its_first_release_on(field: str) -> None:
    first, before = FIRST_RELEASE[field]
    request = _request(**{field: VALUES[field]})
    for version in (first, "0.16.8", None):  # None: Letta Cloud, or no health answer
        check_fields(request, version, "current")
        assert field in build_body(request, "current")
    assert has_feature(first, field) is True
    assert has_feature(before, field) is False


@pytest.mark.parametrize("field", sorted(FIRST_RELEASE))
def test_a_field_is_refused_on_the_release_before_naming_field_and_versions(field: str) -> None:
    first, before = FIRST_RELEASE[field]
    with pytest.raises(LettaUnsupportedFeatureError) as caught:
        check_fields(_request(**{field: VALUES[field]}), before, "current")
    error = caught.value
    assert isinstance(error, LettaInvalidRequestError)
    assert (error.feature, error.server_version) == (field, before)
    assert ".".join(map(str, error.since)) == first
    assert field in str(error)
    assert f"Letta {before}" in str(error)
    assert f"from Letta {first} on" in str(error)
    assert error.is_retryable is False
    assert error.request_accepted is False


def test_an_unknown_version_speaking_an_old_dialect_is_refused_too() -> None:
    with pytest.raises(LettaUnsupportedFeatureError, match="too old"):
        check_fields(_request(override_system="x"), None, "seed")


def test_a_request_without_versioned_fields_goes_anywhere() -> None:
    for version in ("0.6.14", "0.8.2", None):
        check_fields(_request(), version, dialect_for_version(version))


def test_background_is_asked_for_only_where_the_version_says_so() -> None:
    assert supports_background("0.11.5")
    assert not supports_background("0.11.4")
    assert not supports_background(None)  # unlike request fields: unknown means no
