# Generated from async_client.py by `python -m scripts.gen_sync`: edit that one, not this.
"""The clients' shells: they carry out the actions of a flow with I/O, and decide nothing.

Each call's decisions are a :class:`~langchain_letta._wire.flow.StreamFlow`'s; what
the two clients share is :class:`~langchain_letta._wire.base.BaseClient`; what differs
by nature between the flavours comes from :mod:`.async_io` or :mod:`.sync_io`.
``async_client.py`` is the source: ``sync_client.py`` is generated from it with
``unasync`` (``python -m scripts.gen_sync``), so only the async one is edited.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx
from tenacity import Retrying

from langchain_letta._wire import turns
from langchain_letta._wire.actions import (
    ERROR_BODY_LIMIT,
    Ask,
    Deliver,
    Finish,
    Hangup,
    Lock,
    Opened,
    Probe,
    Read,
    ReadBody,
    Send,
    Sleep,
    TakeTurn,
    Unlock,
)
from langchain_letta._wire.base import (
    PROBE_BODY_LIMIT,
    PROBE_TIMEOUT,
    BaseClient,
    opened,
    resumable,
    tried,
)
from langchain_letta._wire.failures import error_from_transport
from langchain_letta._wire.flow import DRAIN_LIMIT, OnResume, OnRetry, StreamFlow
from langchain_letta._wire.http import precise
from langchain_letta._wire.requests import Dialect, StreamRequest
from langchain_letta._wire.retry import logger
from langchain_letta._wire.routes import Exchange, thread_summary
from langchain_letta._wire.settings import ClientSettings
from langchain_letta._wire.sync_io import (
    HTTP_ERRORS,
    PROBE_ERRORS,
    STOPPED,
    TRANSPORT_ERRORS,
    Body,
    Finishers,
    closed,
    for_request,
    make_http,
    new_lock,
    send_streaming,
    sleep,
    within,
)
from langchain_letta.errors import LettaError, StreamProgress
from langchain_letta.events import LettaEvent, ToolCall

T = TypeVar("T")


class EventStream:
    """The events of one streamed request; iterate it, or close it to hang up early.

    The request is sent on first iteration, retried while the server provably has
    not accepted it, and, for a background run, resumed from the last ``seq_id``
    after a drop, so that every event arrives exactly once. ``progress`` tells how
    far the stream got (run id, cursor, stop reason), also after an error.
    """

    def __init__(self, client: LettaClient, flow: StreamFlow) -> None:
        self._client = client
        self._flow = flow
        self._batches = self._drive()

    @property
    def progress(self) -> StreamProgress:
        """Run id, last seq_id, events received and stop reason so far."""
        return self._flow.progress

    def batches(self) -> Iterator[list[LettaEvent]]:
        """The events, one list per network read (pings removed, lists never empty)."""
        return self._batches

    def __iter__(self) -> Iterator[LettaEvent]:
        # A loop that stops early drops this iterator, which is then finalised (by the
        # event loop, for async): hang up there, not when the stream is closed.
        try:
            for batch in self._batches:
                yield from batch
        finally:
            self.close()

    def close(self) -> None:
        """Hang up now; with ``cancel_on_close`` the background run is cancelled too."""
        self._batches.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _drive(self) -> Generator[list[LettaEvent], None]:
        """Carry out the flow's actions with this shell's I/O; nothing is decided here."""
        client, flow = self._client, self._flow
        actions = flow.run()
        body = Body(None)
        holding = False
        turn: turns.Turn | None = None
        reply: Any = None
        try:
            while True:
                try:
                    action = actions.send(reply)
                except StopIteration:
                    return
                reply = None
                if type(action) is Read:
                    bound = client.read_timeout if action.timeout is None else action.timeout
                    reply = body.read(bound)
                elif type(action) is Deliver:
                    yield action.events
                elif type(action) is Send:
                    response, reply = client._open(action)
                    body = Body(response)
                elif type(action) is ReadBody:
                    reply = body.rest(action.limit, client.read_timeout)
                    body = closed(body)
                elif type(action) is Hangup:
                    body = closed(body)
                elif type(action) is Finish:
                    if body.response is not None:
                        client._finishing.start(body, action.limit, action.seconds)
                    body = Body(None)
                elif type(action) is Probe:
                    client.probe(action.version_matters)
                elif type(action) is Sleep:
                    sleep(action.seconds)
                elif type(action) is Lock:
                    client._deciding.acquire()
                    holding = True
                elif type(action) is Unlock:
                    client._deciding.release()
                    holding = False
                elif type(action) is TakeTurn:
                    turn = turns.acquire(action.key, action.timeout)
                    reply = turn is not None
                elif type(action) is Ask:
                    reply = client._ask(action)
        except STOPPED:
            if (run_id := flow.run_to_cancel()) is not None:
                client.cancel(flow.agent_id, run_id)
            if turn is not None and (drain := flow.after_stop()):
                # The run goes on (or is being cancelled): its turn ends when the run
                # does, learnt elsewhere: from the rest of this body or, where the stop cut
                # a read short (its iterator ended) or came before the answer, from the run
                # read again from the cursor, else from the server's listing of runs.
                release = turn.hand_over().release
                turn = None
                if body.response is not None and not body.cut:
                    client._finishing.start(body, DRAIN_LIMIT, drain, release)
                    body = Body(None)
                elif flow.resumable:
                    rest = client.resume(flow.agent_id, flow.progress, total_timeout=drain)
                    client._finishing.follow(rest.batches(), rest.close, release)
                else:
                    waiting = client._carry_out(flow.wait_out(drain))
                    client._finishing.follow(waiting, waiting.close, release)
            raise
        finally:
            closed(body)
            if holding:
                client._deciding.release()
            if turn is not None:
                turn.release()


class LettaClient(BaseClient):
    """Streams messages to Letta agents over one pooled set of HTTP connections.

    Takes the keyword settings of :class:`ClientSettings`, and ``http_client``, an
    httpx client of the same flavour (``httpx.Client`` for :class:`LettaClient`,
    ``httpx.AsyncClient`` for :class:`AsyncLettaClient`) to use as it is instead of
    those made here (its owner closes it; redirects are never followed, whatever its
    setting, so that no credential reaches another host). Which transport the clients
    made here use is :mod:`~langchain_letta._wire.http`'s choice; an async client's
    waits and locks are asyncio's, so its calls run on an asyncio loop.
    """

    def __init__(
        self, *, http_client: httpx.Client | None = None, **settings: Unpack[ClientSettings]
    ) -> None:
        super().__init__(**settings)
        self._given = http_client is not None
        self._http = make_http(http_client, self.timeout)
        self._deciding = new_lock()
        self._probing = new_lock()
        self._finishing = Finishers()

    def probe(self, version_matters: bool = False) -> None:
        """Ask ``/v1/health/`` for the server's version, once, if a decision needs it.

        The answer is bounded in size and time; a server that gives none is
        treated as one whose release is unknown. Calls that start together wait
        for one probe rather than each sending its own.
        """
        if self.facts.needs_probe(version_matters):
            with self._probing:
                self._probe(version_matters)

    def _probe(self, version_matters: bool) -> None:
        if not self.facts.needs_probe(version_matters):
            return  # another call probed meanwhile
        status: int | None = None
        body = b""
        http = for_request(self._http)
        request = http.build_request(
            "GET", self.url("/v1/health/"), headers=self.headers(), timeout=PROBE_TIMEOUT
        )

        def ask() -> tuple[int, bytes]:
            response = http.send(request, stream=True, follow_redirects=False)
            answer = Body(response)
            try:
                return response.status_code, answer.rest(PROBE_BODY_LIMIT, PROBE_TIMEOUT)
            finally:
                answer.close()

        try:
            status, body = within(PROBE_TIMEOUT, ask)
        except PROBE_ERRORS as error:
            logger.debug("the Letta health probe failed: %s", type(error).__name__)
        self.facts.learn_from_health(status, body)

    def dialect(self) -> Dialect:
        """The request dialect of this server, probed once and cached."""
        self.probe()
        return self.facts.dialect or "current"

    def stream(
        self,
        agent_id: str,
        request: StreamRequest,
        *,
        conversation_id: str | None = None,
        total_timeout: float | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> EventStream:
        """Send ``request`` to ``agent_id`` and stream the typed events until ``[DONE]``.

        Args:
            agent_id: The agent.
            request: What to send.
            conversation_id: Send into this conversation of the agent (Letta
                0.16.2+) instead of the agent's own thread.
            total_timeout: Seconds this call may take in all (retries, stream and
                resumes); the client's ``total_timeout`` if ``None``.
            on_retry: Called before each retry of a request the server did not accept.
            on_resume: Called before each resume of a dropped background run.

        Raises (while iterating):
            LettaError: A typed subclass for every failure; see ``errors``.
        """
        hooks = {"on_retry": on_retry, "on_resume": on_resume}
        flow = self.flow(agent_id, request, conversation_id, None, total_timeout, hooks)
        return EventStream(self, flow)

    def resume(
        self,
        agent_id: str,
        progress: StreamProgress,
        *,
        total_timeout: float | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> EventStream:
        """Read a background run again after ``progress.last_seq_id`` (0: from the start).

        ``progress`` is typically ``error.progress`` of a stream that could not be
        resumed at the time. Nothing is sent to the agent: no turn is duplicated.
        """
        hooks = {"on_retry": on_retry, "on_resume": on_resume}
        flow = self.flow(agent_id, None, None, resumable(progress), total_timeout, hooks)
        return EventStream(self, flow)

    def create_conversation(self, agent_id: str, **fields: Any) -> str:
        """Start a new conversation of ``agent_id`` (Letta 0.16.2+) and return its id.

        A conversation is one thread of the agent: its own context window, the
        agent's shared memory; several conversations of one agent can run at once.

        Args:
            agent_id: The agent.
            **fields: Optional fields of Letta's ``CreateConversation`` (``summary``,
                ``isolated_block_labels``, ``model``, ``model_settings``).

        Raises:
            LettaUnsupportedFeatureError: The server is older than 0.16.2 (nothing sent).
            LettaError: The typed error of the server's answer.
        """
        self.probe(version_matters=True)
        path, query, body = self.conversation_target(agent_id, fields)

        def create() -> str:
            return self.created_conversation(*self._exchange("POST", path, query, body))

        return Retrying(**self.repeatable("creating a conversation"))(create)

    def thread_conversation(self, agent_id: str, thread_id: str) -> str:
        """The conversation of LangGraph thread ``thread_id``: found, else created (0.16.2+).

        Created with a summary naming the thread, so that another worker finds it
        before the thread's state holds an answer naming it (0.16.4+).
        """
        self.probe(version_matters=True)
        lookup = "finding the LangGraph thread's conversation"
        found = self._look_up(lambda: self.thread_lookup(agent_id, thread_id), lookup)
        if found is not None:
            return found
        created = self.create_conversation(agent_id, summary=thread_summary(thread_id))
        # two workers at once may both have created one: all settle on the oldest
        again = self._look_up(lambda: self.thread_lookup(agent_id, thread_id), lookup)
        return again or created

    def pending_approval(self, agent_id: str, conversation_id: str | None = None) -> list[ToolCall]:
        """The calls the agent's thread (or ``conversation_id``) waits to have answered.

        Asked of the server's live state (the thread's last in-context message), so
        a thread left waiting can be answered without the history that asked (Letta
        0.13+): approve or deny a server tool, or give a client tool's result, by
        the calls' ids. A request of an abandoned run that never reached the
        context is not listed: the server would refuse an answer to it.

        Raises:
            LettaUnsupportedFeatureError: The server has no approvals (nothing sent).
            LettaError: The typed error of the server's answer.
        """
        self.probe(version_matters=True)
        return self._look_up(
            lambda: self.pending_lookup(agent_id, conversation_id),
            "reading what the thread waits for",
        )

    def _look_up(
        self, lookup: Callable[[], Generator[Exchange, tuple[Opened, bytes], T]], what: str
    ) -> T:
        """Make a sans-I/O lookup's exchanges, retried as a whole after a passing failure."""

        def look() -> T:
            asking = lookup()
            try:
                ask = next(asking)
                while True:
                    answer = self._exchange(ask.method, ask.path, ask.query, None, ask.limit)
                    ask = asking.send(answer)
            except StopIteration as done:
                found: T = done.value
                return found

        return Retrying(**self.repeatable(what))(look)

    def _ask(self, ask: Ask) -> tuple[Opened, bytes] | LettaError:
        """A flow's question: the answer, or its typed error."""
        try:
            return self._exchange("GET", ask.path, ask.query, None, ask.limit)
        except LettaError as error:
            return error

    def _carry_out(self, actions: Generator[Ask | Sleep, Any, None]) -> Generator[None, None]:
        """Ask and sleep as ``actions`` (a flow's wait) say; one item per step."""
        reply: Any = None
        with contextlib.suppress(StopIteration):  # the wait is over
            while True:
                action = actions.send(reply)
                if isinstance(action, Ask):
                    reply = self._ask(action)
                else:
                    sleep(action.seconds)
                    reply = None
                yield None

    def _exchange(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        limit: int = ERROR_BODY_LIMIT,
    ) -> tuple[Opened, bytes]:
        """One JSON request that is not a stream; at most ``limit`` bytes of its answer."""
        http = for_request(self._http)
        request = http.build_request(
            method, self.url(path), params=query, json=body, headers=self.headers()
        )
        try:
            response = http.send(request, stream=True, follow_redirects=False)
            answer = Body(response)
            try:
                data = answer.rest(limit, self.read_timeout)
            finally:
                answer.close()
        except TRANSPORT_ERRORS as error:
            raise error_from_transport(precise(error), tried(request)) from None
        return opened(response), data

    def cancel(self, agent_id: str, run_id: str) -> None:
        """Ask the server to cancel ``run_id`` (needs Redis on the server); never raises."""
        path, body = self.cancel_target(agent_id, run_id)
        try:
            for_request(self._http).post(
                self.url(path),
                json=body,
                headers=self.headers(),
                timeout=5.0,
                follow_redirects=False,
            )
        except HTTP_ERRORS as error:
            logger.warning("could not cancel Letta run %s: %s", run_id, type(error).__name__)

    def close(self) -> None:
        """Close the connections made here (a given client stays open to its owner).

        Bodies still being read to their end are given up on.
        """
        self._finishing.close()
        if not self._given:
            self._http.close()

    def __enter__(self) -> LettaClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _open(self, send: Send) -> tuple[httpx.Response | None, Opened | LettaError]:
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if send.read_timeout is not None:
            timeout = httpx.Timeout(send.read_timeout, connect=self.connect_timeout)
        http = for_request(self._http)
        request = http.build_request(
            "POST", self.url(send.path), json=send.body, headers=self.headers(), timeout=timeout
        )
        try:
            response = send_streaming(http, request, own=not self._given)
        except TRANSPORT_ERRORS as error:
            return None, error_from_transport(precise(error), tried(request))
        return response, opened(response)
