"""Prometheus metrics, served as ``/metrics`` by ``bot.health``.

Call sites use the small functions below, one line each, so the code that does the work
stays readable and the metrics are defined in one place. Labels are bounded sets only —
platform, event kind, message kind, an API error code — never a user id, a channel, or
any text a person wrote, so a scrape cannot tell who answered what.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

ROUNDS_OPENED = Counter(
    "roundtable_rounds_opened",
    "Rounds posted into a channel (the platform accepted the post).",
    ["platform"],
    registry=REGISTRY,
)
ROUNDS_FAILED = Counter(
    "roundtable_rounds_failed",
    "Round posts that failed: refused for good (reason=refused) or failed for now "
    "(reason=error, retried later).",
    ["platform", "reason"],
    registry=REGISTRY,
)
ROUNDS_CLOSED = Counter(
    "roundtable_rounds_closed",
    "Rounds closed (by close_after, by the next round opening, or by /discuss close).",
    ["platform"],
    registry=REGISTRY,
)
ANSWERS_STORED = Counter(
    "roundtable_answers_stored",
    "Answers committed to the database (new or updated), named or anonymous.",
    ["platform", "anonymous"],
    registry=REGISTRY,
)
EVENTS_RECEIVED = Counter(
    "roundtable_events_received",
    "Events handed to the core by an adapter: commands, messages, edits, deletions, forms.",
    ["platform", "kind"],
    registry=REGISTRY,
)
EVENT_LAG = Histogram(
    "roundtable_event_processing_seconds",
    "Seconds from an event being stored in the inbox until it was handled and its posts delivered.",
    ["platform"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
MESSAGES_WAITING = Gauge(
    "roundtable_messages_waiting",
    "Outbox rows (rounds, digests, thread messages) written and not delivered yet.",
    registry=REGISTRY,
)
MESSAGES_FAILED = Counter(
    "roundtable_messages_failed",
    "Channel posts that failed: refused for good (permanent=true) or failed for now.",
    ["platform", "kind", "permanent"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "roundtable_platform_api_errors",
    "Errors returned by a platform's API, by the platform's own code "
    "(Slack: 'not_in_channel' or an HTTP status; Discord: its JSON error code or HTTP status).",
    ["platform", "code"],
    registry=REGISTRY,
)
ACK_LATENCY = Histogram(
    "roundtable_ack_latency_seconds",
    "Seconds until a platform request was acknowledged (Slack and Discord allow 3 s).",
    ["platform"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
    registry=REGISTRY,
)

_waiting_sources: list[Callable[[], int | Awaitable[int]]] = []
_waiting_now = [0.0]  # what the sources said at the last refresh


def _waiting() -> float:
    return _waiting_now[0]


MESSAGES_WAITING.set_function(_waiting)


def round_opened(platform: str) -> None:
    ROUNDS_OPENED.labels(platform).inc()


def round_failed(platform: str, *, permanent: bool) -> None:
    ROUNDS_FAILED.labels(platform, "refused" if permanent else "error").inc()


def round_closed(platform: str) -> None:
    ROUNDS_CLOSED.labels(platform).inc()


def answer_stored(platform: str, *, anonymous: bool) -> None:
    ANSWERS_STORED.labels(platform, str(anonymous).lower()).inc()


def event_received(platform: str, kind: str) -> float:
    """Count the event; returns the start time for ``event_handled``. Counted inside
    the ack: the labelled counter is looked up once per platform and kind."""
    _received(platform, kind).inc()
    return time.monotonic()


@functools.cache
def _received(platform: str, kind: str) -> Any:
    return EVENTS_RECEIVED.labels(platform, kind)


def event_handled(platform: str, started: float) -> None:
    EVENT_LAG.labels(platform).observe(time.monotonic() - started)


def message_failed(platform: str, kind: str, *, permanent: bool) -> None:
    MESSAGES_FAILED.labels(platform, kind, str(permanent).lower()).inc()


def post_failed(post: object, *, permanent: bool) -> None:
    """A channel post failed; a round's own post also counts as a failed round."""
    platform = str(getattr(post, "channel", "unknown")).split(":", 1)[0]
    kind = type(post).__name__
    message_failed(platform, kind, permanent=permanent)
    if kind == "RoundPost":
        round_failed(platform, permanent=permanent)


def api_error(platform: str, code: object) -> None:
    API_ERRORS.labels(platform, str(code)).inc()


def ack_latency(platform: str, seconds: float) -> None:
    _ack_latency(platform).observe(max(0.0, seconds))


@functools.cache
def _ack_latency(platform: str) -> Any:
    return ACK_LATENCY.labels(platform)  # looked up once: observed inside every ack


def ack_since(platform: str, created: datetime) -> None:
    """Ack latency from the platform's own timestamp of the request (Discord interactions)."""
    ack_latency(platform, (datetime.now(UTC) - created).total_seconds())


def time_acks(app: Any, platform: str) -> None:
    """Observe ack latency of a slack-bolt app in both Socket Mode and HTTP mode.

    With ``process_before_response=True`` bolt has the ack ready when ``async_dispatch``
    returns (request checks, middleware, the listener's ``ack()``), so its duration is
    the ack latency as the bot can see it.
    """
    dispatch = app.async_dispatch

    async def timed(request: Any) -> Any:
        started = time.monotonic()
        try:
            return await dispatch(request)
        finally:
            ack_latency(platform, time.monotonic() - started)

    app.async_dispatch = timed


def count_waiting(source: Callable[[], int | Awaitable[int]]) -> Callable:
    """Add a count of posts waiting to be sent (undelivered outbox rows), read at scrape."""
    _waiting_sources.append(source)
    return source


def forget_waiting(source: Callable) -> None:
    if source in _waiting_sources:
        _waiting_sources.remove(source)


async def refresh() -> None:
    """Ask the waiting-count sources before a scrape (they may query the database)."""
    total = 0.0
    for source in list(_waiting_sources):
        try:
            value = source()
            total += await value if inspect.isawaitable(value) else value
        except Exception:  # a broken source must not break the whole scrape
            total = float("nan")
    _waiting_now[0] = total
