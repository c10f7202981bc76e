"""When to try again, and how long to wait: tenacity policies for sending and for resuming.

Sending a message is retried only while the server provably has not accepted it
(nothing reached it, or it refused with 429, 502, 503, 504 or a busy 409):
otherwise the turn would land in the agent's memory twice. Resuming a background
run is a read, so it may be retried after any failure except a definite "no such
resumable run" (400, 404, 410).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_base, wait_exponential, wait_random

from langchain_letta.errors import LettaError, LettaRateLimitError

logger = logging.getLogger("langchain_letta")
# A library logs, it does not print: without the application's own logging set up,
# Python would write warnings to stderr in the middle of the application's output.
logger.addHandler(logging.NullHandler())

DEFAULT_RETRY_TIMEOUT = 60.0
"""Seconds after which no further retry starts, whatever ``max_retries`` allows; no wait
reaches past them either (a longer ``Retry-After`` ends the retries at once)."""

_NOT_RESUMABLE = frozenset({400, 404, 410})


def safe_to_resend(error: BaseException) -> bool:
    """Whether sending the same message again cannot duplicate the turn."""
    return isinstance(error, LettaError) and error.is_retryable and not error.request_accepted


def worth_resuming_again(error: BaseException) -> bool:
    """Whether another resume attempt may succeed (resuming only reads)."""
    return isinstance(error, LettaError) and error.status_code not in _NOT_RESUMABLE


class _WaitRetryAfter(wait_base):
    """Exponential back-off with jitter, but never shorter than the server's Retry-After."""

    def __init__(self) -> None:
        self._backoff = wait_exponential(multiplier=0.5, max=8.0) + wait_random(0, 0.5)

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self._backoff(retry_state))
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, LettaRateLimitError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait


def retry_policy(
    should_retry: Callable[[BaseException], bool],
    *,
    max_retries: int,
    timeout: float,
    on_retry: Callable[[RetryCallState], None] | None,
    what: str,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``.

    Args:
        should_retry: Which errors to try again after.
        max_retries: Attempts after the first.
        timeout: No retry starts, and no wait ends, after this many seconds.
        on_retry: Told about every retry before its wait (callbacks, tracing).
        what: Names the operation in the log.
    """

    def before_sleep(retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.upcoming_sleep
        logger.warning(
            "%s failed (attempt %d): %s; retrying in %.1fs",
            what,
            retry_state.attempt_number,
            error,
            wait,
        )
        if on_retry is not None:
            on_retry(retry_state)

    return {
        "retry": retry_if_exception(should_retry),
        # stop_before_delay sees the coming wait: a Retry-After of 100000 s (or inf) with
        # 60 s left raises the error now instead of sleeping past the timeout (or forever).
        "stop": stop_after_attempt(max_retries + 1) | stop_before_delay(timeout),
        "wait": _WaitRetryAfter(),
        "before_sleep": before_sleep,
        "reraise": True,
    }
