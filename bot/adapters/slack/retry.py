"""slack_sdk's async retry handlers, with the sleep injected so tests never wait.

The rate-limit handler honours ``Retry-After`` exactly as slack_sdk's does; the server
error handler also covers 502/504 (proxies in front of Slack answer those).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot import metrics

Sleep = Callable[[float], Awaitable[None]]
BACKOFF = BackoffRetryIntervalCalculator(backoff_factor=0.5)


def retry_after(response: HttpResponse) -> float:
    """Seconds Slack asked us to wait (``Retry-After``), 1 when it did not say."""
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0]))
            except ValueError:
                break
    return 1.0


class _InjectedSleep(AsyncRetryHandler):
    """The attempt bookkeeping shared by our handlers; each says only how long to wait."""

    sleep: Sleep

    def delay(self, state: RetryState, response: HttpResponse | None) -> float:
        raise NotImplementedError

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        metrics.api_error("slack", response.status_code if response else type(error).__name__)
        await self.sleep(self.delay(state, response))
        state.increment_current_attempt()


class RateLimitRetry(_InjectedSleep, AsyncRateLimitErrorRetryHandler):
    """Retries HTTP 429 after ``Retry-After`` seconds (plus up to a second of jitter)."""

    def __init__(self, max_retry_count: int = 5, sleep: Sleep = asyncio.sleep):
        AsyncRateLimitErrorRetryHandler.__init__(self, max_retry_count=max_retry_count)
        self.sleep = sleep

    def delay(self, state: RetryState, response: HttpResponse | None) -> float:
        # only asked after a 429, so there is always a response to read
        return (retry_after(response) if response is not None else 1.0) + random.random()


class _BackoffSleep(_InjectedSleep):
    def delay(self, state: RetryState, response: HttpResponse | None) -> float:
        return self.interval_calculator.calculate_sleep_duration(state.current_attempt)


class ServerErrorRetry(_BackoffSleep, AsyncServerErrorRetryHandler):
    def __init__(self, max_retry_count: int = 3, sleep: Sleep = asyncio.sleep):
        AsyncServerErrorRetryHandler.__init__(self, max_retry_count, BACKOFF)
        self.sleep = sleep

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in (500, 502, 503, 504)


class ConnectionErrorRetry(_BackoffSleep, AsyncConnectionErrorRetryHandler):
    def __init__(self, max_retry_count: int = 3, sleep: Sleep = asyncio.sleep):
        AsyncConnectionErrorRetryHandler.__init__(self, max_retry_count, BACKOFF)
        self.sleep = sleep


def all_handlers(sleep: Sleep = asyncio.sleep) -> list[AsyncRetryHandler]:
    """For calls that are safe to repeat: reads, ephemerals, views, users."""
    return [
        RateLimitRetry(sleep=sleep),
        ServerErrorRetry(sleep=sleep),
        ConnectionErrorRetry(sleep=sleep),
    ]


def rate_limit_only(sleep: Sleep = asyncio.sleep) -> list[AsyncRetryHandler]:
    """For ``chat.postMessage``: a 429 was not posted, but a 5xx may have been."""
    return [RateLimitRetry(sleep=sleep)]
