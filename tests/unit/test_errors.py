"""``error_from_response`` and ``error_from_stream``: classes, retryability, readable details."""

from __future__ import annotations

import json

import httpx
import pytest
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)

from langchain_letta.errors import (
    LettaAPIError,
    LettaAuthenticationError,
    LettaConflictError,
    LettaContextOverflowError,
    LettaError,
    LettaInvalidRequestError,
    LettaNotFoundError,
    LettaPendingApprovalError,
    LettaPermissionDeniedError,
    LettaRateLimitError,
    LettaTimeoutError,
    StreamProgress,
    error_from_response,
    error_from_stream,
)
from langchain_letta.events import StreamErrorFrame, parse_event
from tests.conftest import CAPTURES

# Real 409 bodies of Letta 0.16.8 (``{"detail": str(exc)}`` of letta/errors.py).
BUSY_409 = json.dumps(
    {
        "detail": "CONFLICT: Cannot send a new message: Another request (run_id=run-1) is "
        "currently being processed for this conversation. Please wait for it to complete.",
        "run_id": "run-1",
    }
)
PENDING_APPROVAL_409 = json.dumps(
    {
        "detail": "CONFLICT: Cannot send a new message: The agent is waiting for approval on a "
        "tool call. Please approve or deny the pending request before continuing."
    }
)
PENDING_APPROVAL_409_OBJECT = json.dumps(
    {
        # 0.16.8 routes that catch PendingApprovalError themselves (HTTPException detail)
        "detail": {
            "code": "PENDING_APPROVAL",
            "message": "CONFLICT: Cannot send a new message: The agent is waiting for approval "
            "on a tool call. Please approve or deny the pending request before continuing.",
            "pending_request_id": "message-d4",
        }
    }
)
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _capture(name: str) -> str:
    return (CAPTURES / name).read_text()


# --- error_from_response: classes -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "letta_class", "core_class"),
    [
        (401, '{"detail":"Unauthorized"}', LettaAuthenticationError, ModelAuthenticationError),
        (403, '{"detail":"Forbidden"}', LettaPermissionDeniedError, ModelPermissionDeniedError),
        (404, '{"detail":"Agent not found"}', LettaNotFoundError, ModelNotFoundError),
        (
            400,
            '{"detail":"Messages must not be empty"}',
            LettaInvalidRequestError,
            ModelInvalidRequestError,
        ),
        (
            422,
            '{"detail":"Messages must not be empty"}',
            LettaInvalidRequestError,
            ModelInvalidRequestError,
        ),
        (429, "{}", LettaRateLimitError, ModelRateLimitError),
        (409, BUSY_409, LettaConflictError, ModelAPIError),
        (500, '{"detail":"boom"}', LettaAPIError, ModelAPIError),
        (503, '{"detail":"boom"}', LettaAPIError, ModelAPIError),
    ],
)
def test_status_maps_to_a_class_of_both_hierarchies(
    status: int, body: str, letta_class: type, core_class: type
) -> None:
    error = error_from_response(status, body)
    assert type(error) is letta_class
    assert isinstance(error, LettaError)
    assert isinstance(error, core_class)
    assert error.status_code == status
    assert f"HTTP {status}" in str(error)


def test_401_is_not_retryable_and_reads_the_detail() -> None:
    error = error_from_response(401, '{"detail":"Unauthorized"}')
    assert error.is_retryable is False
    assert error.detail == "Unauthorized"
    assert error.body == {"detail": "Unauthorized"}


def test_401_from_the_llm_provider_keeps_lettas_error_type() -> None:
    body = '{"error":{"type":"llm_authentication","message":"Invalid API key","detail":"401"}}'
    error = error_from_response(401, body)
    assert isinstance(error, LettaAuthenticationError)
    assert error.error_type == "llm_authentication"
    assert error.detail == "Invalid API key"


def test_403_is_not_retryable() -> None:
    error = error_from_response(403, '{"detail":"Forbidden"}')
    assert isinstance(error, LettaPermissionDeniedError)
    assert error.is_retryable is False


def test_404_unknown_agent_0_16_8() -> None:
    error = error_from_response(404, _capture("0.16.8/memgpt_v2_agent/06-unknown-agent.txt"))
    assert isinstance(error, LettaNotFoundError)
    assert isinstance(error, ModelNotFoundError)
    assert error.detail == "Agent with ID agent-00000000-0000-4000-8000-000000000000 not found"
    assert error.is_retryable is False


def test_500_agent_not_found_from_0_6_14_is_not_found() -> None:
    error = error_from_response(500, _capture("0.6.14/memgpt_agent/06-unknown-agent.txt"))
    assert isinstance(error, LettaNotFoundError)
    assert isinstance(error, ModelNotFoundError)
    assert error.status_code == 500
    assert error.detail.startswith(
        "Agent not found with id='agent-00000000-0000-4000-8000-000000000000'"
    )
    assert error.is_retryable is False


def test_500_other_than_agent_not_found_is_an_api_error() -> None:
    error = error_from_response(500, '{"detail":"Database is locked"}')
    assert type(error) is LettaAPIError
    assert error.is_retryable is False


def test_409_busy_agent_is_retryable() -> None:
    error = error_from_response(409, BUSY_409)
    assert isinstance(error, LettaConflictError)
    assert error.is_retryable is True
    assert "currently being processed" in error.detail
    assert error.body["run_id"] == "run-1"


def test_409_pending_approval_is_not_retryable() -> None:
    error = error_from_response(409, PENDING_APPROVAL_409)
    assert isinstance(error, LettaPendingApprovalError)
    assert isinstance(error, LettaConflictError)
    assert isinstance(error, ModelAPIError)
    assert error.is_retryable is False
    assert error.request_accepted is False
    assert "waiting for approval" in error.detail
    assert error.pending_request_id is None  # this form of the 409 does not name it
    assert error.pending_tool_calls == []


def test_409_pending_approval_as_an_object_names_the_approval_request() -> None:
    error = error_from_response(409, PENDING_APPROVAL_409_OBJECT)
    assert isinstance(error, LettaPendingApprovalError)
    assert error.is_retryable is False
    assert error.pending_request_id == "message-d4"
    assert error.error_type == "PENDING_APPROVAL"
    assert error.detail.startswith("CONFLICT: Cannot send a new message")
    assert "{" not in str(error)  # the message, not the repr of the object


def test_409_busy_is_not_mistaken_for_a_pending_approval() -> None:
    error = error_from_response(409, BUSY_409)
    assert not isinstance(error, LettaPendingApprovalError)
    assert error.is_retryable is True


# --- 422 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "capture",
    ["0.6.14/memgpt_agent/07-invalid-body.txt", "0.11.7/memgpt_agent/07-invalid-body.txt"],
)
def test_422_with_detail_list_reads_as_field_and_message(capture: str) -> None:
    error = error_from_response(422, _capture(capture))
    assert isinstance(error, LettaInvalidRequestError)
    assert isinstance(error, ModelInvalidRequestError)
    assert error.detail == "body.messages: Input should be a valid list"
    assert error.detail in str(error)
    assert error.is_retryable is False


def test_422_with_several_list_items_names_every_field() -> None:
    body = {
        "detail": [
            {"type": "missing", "loc": ["body", "messages", 0, "text"], "msg": "Field required"},
            {"type": "bool_type", "loc": ["body", "stream_tokens"], "msg": "Input should be bool"},
        ]
    }
    error = error_from_response(422, json.dumps(body))
    assert error.detail == (
        "body.messages.0.text: Field required; body.stream_tokens: Input should be bool"
    )


def test_422_missing_messages_from_0_6_14() -> None:
    error = error_from_response(422, _capture("0.6.14/memgpt_agent/08-missing-messages.txt"))
    assert error.detail == "body.messages: Field required"


def test_422_with_detail_string_from_0_16_8_names_the_field() -> None:
    error = error_from_response(422, _capture("0.16.8/memgpt_v2_agent/07-invalid-body.txt"))
    assert isinstance(error, LettaInvalidRequestError)
    assert "'messages'" in error.detail
    assert "Input should be a valid list" in error.detail
    assert error.body["trace_id"] == ""
    assert error.is_retryable is False


def test_422_explicit_detail_string_is_kept_verbatim() -> None:
    error = error_from_response(422, '{"detail":"Messages must not be empty"}')
    assert error.detail == "Messages must not be empty"


# --- 429 --------------------------------------------------------------------------------


def test_429_reads_retry_after_seconds_and_is_retryable() -> None:
    body = '{"error":{"type":"llm_rate_limit","message":"Rate limit exceeded","detail":"x"}}'
    error = error_from_response(429, body, headers=httpx.Headers({"Retry-After": "7"}))
    assert isinstance(error, LettaRateLimitError)
    assert isinstance(error, ModelRateLimitError)
    assert error.retry_after == 7.0
    assert error.is_retryable is True
    assert error.error_type == "llm_rate_limit"
    assert error.detail == "Rate limit exceeded"


def test_429_fractional_retry_after() -> None:
    error = error_from_response(429, "{}", headers=httpx.Headers({"retry-after": "1.5"}))
    assert error.retry_after == 1.5


def test_429_without_retry_after() -> None:
    error = error_from_response(429, "{}", headers=httpx.Headers({}))
    assert error.retry_after is None
    assert error.is_retryable is True


def test_429_retry_after_as_http_date_is_unknown() -> None:
    headers = httpx.Headers({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})
    error = error_from_response(429, "{}", headers=headers)
    assert error.retry_after is None


def test_429_negative_retry_after_is_clamped_to_zero() -> None:
    error = error_from_response(429, "{}", headers=httpx.Headers({"Retry-After": "-3"}))
    assert error.retry_after == 0.0


def test_429_retry_after_from_a_plain_dict_with_canonical_spelling() -> None:
    error = error_from_response(429, "{}", headers={"Retry-After": "7"})
    assert error.retry_after == 7.0


def test_response_headers_never_reach_the_message() -> None:
    headers = httpx.Headers({"Retry-After": "1", "Set-Cookie": "session=s3cr3t"})
    error = error_from_response(429, '{"detail":"slow down"}', headers=headers)
    assert "s3cr3t" not in str(error)


# --- 5xx and odd bodies -----------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retryable(status: int) -> None:
    error = error_from_response(status, '{"detail":"upstream unavailable"}')
    assert type(error) is LettaAPIError
    assert error.is_retryable is True


def test_500_is_not_retryable_because_the_message_may_be_stored() -> None:
    assert error_from_response(500, '{"detail":"boom"}').is_retryable is False


def test_503_background_without_redis_from_0_16_8() -> None:
    error = error_from_response(503, _capture("0.16.8/memgpt_v2_agent/16-background-no-redis.txt"))
    assert error.is_retryable is True
    assert "Background streaming requires Redis" in error.detail


def test_html_502_page_gives_a_readable_excerpt() -> None:
    error = error_from_response(502, NGINX_502)
    assert type(error) is LettaAPIError
    assert error.is_retryable is True
    assert "502 Bad Gateway" in str(error)
    assert "\r" not in str(error)
    assert "\n" not in str(error)
    assert isinstance(error.body, str)


def test_long_non_json_body_is_cut_to_an_excerpt() -> None:
    page = "<html>" + "x" * 10_000 + "</html>"
    error = error_from_response(502, page)
    assert len(error.detail) <= 501
    assert error.detail.endswith("…")
    assert len(str(error)) < 600


def test_empty_body() -> None:
    error = error_from_response(500, "")
    assert type(error) is LettaAPIError
    assert error.detail == "(empty body)"
    assert "HTTP 500" in str(error)


def test_json_body_without_detail_or_error_is_shown_whole() -> None:
    error = error_from_response(500, '{"message":"odd"}')
    assert "odd" in error.detail


def test_other_4xx_is_a_non_retryable_api_error() -> None:
    body = '{"error":{"type":"llm_insufficient_credits","message":"Insufficient credits"}}'
    error = error_from_response(402, body)
    assert type(error) is LettaAPIError
    assert error.is_retryable is False
    assert error.error_type == "llm_insufficient_credits"


# --- request_accepted ---------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body"), [(503, "{}"), (429, "{}"), (409, BUSY_409)])
def test_request_accepted_forces_not_retryable(status: int, body: str) -> None:
    assert error_from_response(status, body).is_retryable is True
    error = error_from_response(status, body, request_accepted=True)
    assert error.request_accepted is True
    assert error.is_retryable is False


def test_request_accepted_beats_an_explicit_is_retryable() -> None:
    error = LettaRateLimitError("slow", request_accepted=True, is_retryable=True)
    assert error.is_retryable is False


def test_is_retryable_falls_back_to_the_langchain_class_default() -> None:
    assert LettaRateLimitError("slow").is_retryable is True
    assert LettaAuthenticationError("no").is_retryable is False


# --- error_from_stream ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "letta_class", "core_class"),
    [
        ("llm_rate_limit", LettaRateLimitError, ModelRateLimitError),
        ("llm_authentication", LettaAuthenticationError, ModelAuthenticationError),
        ("llm_timeout", LettaTimeoutError, ModelTimeoutError),
        (
            "context_window_overflow_in_system_prompt",
            LettaContextOverflowError,
            ContextOverflowError,
        ),
        ("context_window_exceeded", LettaContextOverflowError, ContextOverflowError),
        ("internal_error", LettaAPIError, ModelAPIError),
        ("llm_error", LettaAPIError, ModelAPIError),
        ("something_new", LettaAPIError, ModelAPIError),
        (None, LettaAPIError, ModelAPIError),
    ],
)
def test_stream_error_type_maps_to_a_never_retryable_class(
    error_type: str | None, letta_class: type, core_class: type
) -> None:
    progress = StreamProgress(run_id="run-1", last_seq_id=4, events_received=3)
    error = error_from_stream(
        error_type, "it failed", "more detail", body={"raw": True}, progress=progress
    )
    assert type(error) is letta_class
    assert isinstance(error, LettaError)
    assert isinstance(error, core_class)
    assert error.request_accepted is True
    assert error.is_retryable is False
    assert error.error_type == error_type
    assert error.detail == "more detail"
    assert error.body == {"raw": True}
    assert error.progress is progress
    assert error.run_id == "run-1"


def test_stream_conflict_waiting_for_approval_is_a_pending_approval_error() -> None:
    # 0.16.8 streams the refusal as an internal_error whose message and detail are str(exc)
    words = (
        "CONFLICT: Cannot send a new message: The agent is waiting for approval on a tool call. "
        "Please approve or deny the pending request before continuing."
    )
    progress = StreamProgress(run_id="run-1", stop_reason="error")
    error = error_from_stream("internal_error", words, words, body={}, progress=progress)
    assert type(error) is LettaPendingApprovalError
    assert error.request_accepted is True
    assert error.is_retryable is False
    assert error.error_type == "internal_error"
    assert str(error).count("waiting for approval") == 1
    assert error.run_id == "run-1"


def test_stream_error_message_carries_message_and_detail() -> None:
    error = error_from_stream(
        "llm_error", "An error occurred", "Error code: 500", body={}, progress=StreamProgress()
    )
    assert "An error occurred" in str(error)
    assert "Error code: 500" in str(error)


def test_stream_error_without_detail() -> None:
    error = error_from_stream(None, "Stream failed", None, body={}, progress=StreamProgress())
    assert error.detail is None
    assert str(error).endswith("Stream failed")


def test_stream_error_keeps_the_http_status() -> None:
    error = error_from_stream(
        None, "boom", None, body={}, progress=StreamProgress(), status_code=500
    )
    assert error.status_code == 500
    assert error.is_retryable is False


def test_stream_error_naming_context_window_exceeded_error_is_an_overflow() -> None:
    error = error_from_stream(
        None,
        "Stream failed: ContextWindowExceededError: 33000 > 32000",
        None,
        body={},
        progress=StreamProgress(),
    )
    assert isinstance(error, LettaContextOverflowError)
    assert error.is_retryable is False


def test_stream_error_before_the_run_id_is_known_has_no_run_id() -> None:
    error = error_from_stream(None, "x", None, body={}, progress=StreamProgress())
    assert error.run_id is None


# Seed-era in-stream errors as 0.6.14 writes them (letta/server/rest_api/utils.py, lines 70-74:
# ``{"error": f"Stream failed: {e}", "code": e.code.value}``; ``str(e)`` starts with the code).
SEED_CONTEXT_OVERFLOW = (
    '{"error":"Stream failed: CONTEXT_WINDOW_EXCEEDED: Not enough messages to compress for '
    "summarization ({'num_candidate_messages': 0, 'num_total_messages': 1})\","
    '"code":"CONTEXT_WINDOW_EXCEEDED"}'
)
SEED_RATE_LIMIT = (
    '{"error":"Stream failed: RATE_LIMIT_EXCEEDED: Maximum number of retries exceeded (3)",'
    '"code":"RATE_LIMIT_EXCEEDED"}'
)


def _from_frame(payload: str) -> LettaError:
    """What the client does with an error frame: parse it, then map it."""
    frame = parse_event(payload)
    assert isinstance(frame, StreamErrorFrame)
    return error_from_stream(
        frame.error_type, frame.message, frame.detail, body=frame.raw, progress=StreamProgress()
    )


def test_seed_context_window_exceeded_frame_is_an_overflow() -> None:
    error = _from_frame(SEED_CONTEXT_OVERFLOW)
    assert isinstance(error, LettaContextOverflowError)
    assert isinstance(error, ContextOverflowError)


def test_seed_rate_limit_exceeded_frame_is_a_rate_limit_error() -> None:
    error = _from_frame(SEED_RATE_LIMIT)
    assert isinstance(error, LettaRateLimitError)
    assert isinstance(error, ModelRateLimitError)


@pytest.mark.parametrize("payload", [SEED_CONTEXT_OVERFLOW, SEED_RATE_LIMIT])
def test_seed_error_frames_are_never_retryable_and_keep_their_code(payload: str) -> None:
    error = _from_frame(payload)
    assert error.is_retryable is False
    assert error.error_type == json.loads(payload)["code"]
    assert "Stream failed" in str(error)
