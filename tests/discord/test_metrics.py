"""Discord's share of the metrics: API errors by Discord's JSON code, failed rounds, acks."""

from __future__ import annotations

from prometheus_client import generate_latest

from bot import metrics
from tests.discord.conftest import MEMBER
from tests.test_metrics import parse, value


def scrape() -> dict:
    return parse(generate_latest(metrics.REGISTRY).decode())


async def test_a_forbidden_channel_counts_its_error_code_and_a_refused_round(bot):
    before = scrape()
    blocked = bot.channels[0]
    bot.fake.forbidden.add(blocked)
    _, outcome = await bot.runtime.service.open_round(f"discord:{blocked}")
    await bot.runtime.dispatcher.publish(outcome.posts)
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    errors = delta("roundtable_platform_api_errors_total", platform="discord", code="50013")
    errors += delta("roundtable_platform_api_errors_total", platform="discord", code="50001")
    assert errors == 1
    assert delta("roundtable_rounds_failed_total", platform="discord", reason="refused") == 1


async def test_each_slash_command_is_acked_and_timed(bot):
    name = "roundtable_ack_latency_seconds_count"
    before = value(scrape(), name, platform="discord")
    token = await bot.fake.slash(MEMBER, bot.channels[0], "help")
    await bot.replies(token)
    assert value(scrape(), name, platform="discord") - before == 1
