"""Slack's share of the metrics: ack latency, API errors by Slack's own code, failed rounds.

Scraped from ``/metrics`` on the Slack server's port, which serves it like the health port.
"""

from __future__ import annotations

from tests.test_metrics import parse, value


async def scrape(slack) -> dict:
    url = f"http://127.0.0.1:{slack.adapter.port}/metrics"
    async with slack.session.get(url) as response:
        assert response.status == 200
        return parse(await response.text())


async def test_acks_are_timed_and_a_refusal_is_counted_by_its_code(slack):
    before = await scrape(slack)
    slack.fake.refuse["C1"] = "not_in_channel"
    await slack.command("now")
    await slack.settle()
    after = await scrape(slack)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("roundtable_ack_latency_seconds_count", platform="slack") == 1
    assert (
        delta("roundtable_platform_api_errors_total", platform="slack", code="not_in_channel") == 1
    )
    assert delta("roundtable_rounds_failed_total", platform="slack", reason="refused") == 1
    assert delta("roundtable_rounds_opened_total", platform="slack") == 0


async def test_a_retried_server_error_is_counted_by_status(slack):
    before = await scrape(slack)
    slack.fake.fail("chat.postMessage", status=503, error="service_unavailable")
    await slack.command("now")
    await slack.settle()
    after = await scrape(slack)
    errors = "roundtable_platform_api_errors_total"
    labels = {"platform": "slack", "code": "service_unavailable"}
    assert value(after, errors, **labels) - value(before, errors, **labels) == 1
    opened = "roundtable_rounds_opened_total"
    assert value(after, opened, platform="slack") - value(before, opened, platform="slack") == 1
