"""When to try again, and how long to wait: tenacity policies for sending and for resuming.

Sending a message is retried only while the server provably has not accepted it
(nothing reached it, or it refused with 429, 502, 503, 504 or a busy 409):
otherwise the turn would land in the agent's memory twice. A busy thread is waited
for until the call's deadline, not for a number of retries. Resuming a background
run is a read, so it may be retried after any failure except a definite "no such
resumable run" (400, 404, 410).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential, wait_random

from langchain_letta.errors import LettaConflictError, LettaError, LettaRateLimitError

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


def busy(error: BaseException | None) -> bool:
    """Whether ``error`` is a busy 409: another run holds the thread (nothing was taken)."""
    return type(error) is LettaConflictError and error.is_retryable


class _Stop(stop_base):
    """Stop after ``max_retries`` retries or ``timeout`` seconds, whichever comes first.

    A busy thread is waited for longer, up to ``busy_timeout``: its run ends when it
    ends (another process's turn, or an abandoned run), and the server's refusal
    proves nothing was taken, so trying again is only a matter of time.
    """

    def __init__(self, max_retries: int, timeout: float, busy_timeout: float | None) -> None:
        self._attempts = stop_after_attempt(max_retries + 1)
        self._timeout = stop_before_delay(timeout)
        self._busy = stop_before_delay(max(timeout, busy_timeout or 0.0))

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if busy(outcome.exception() if outcome is not None else None):
            return bool(self._busy(retry_state))
        return bool(self._attempts(retry_state) or self._timeout(retry_state))


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
    busy_timeout: float | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``.

    Args:
        should_retry: Which errors to try again after.
        max_retries: Attempts after the first.
        timeout: No retry starts, and no wait ends, after this many seconds.
        on_retry: Told about every retry before its wait (callbacks, tracing).
        what: Names the operation in the log.
        busy_timeout: How long a busy thread (409) is waited for, if longer than
            ``timeout`` (the call's remaining time).
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
        "stop": _Stop(max_retries, timeout, busy_timeout),
        "wait": _WaitRetryAfter(),
        "before_sleep": before_sleep,
        "reraise": True,
    }
