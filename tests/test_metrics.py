"""``/metrics`` and ``/healthz`` on the health port, scraped the way Prometheus does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Config, HealthSettings
from bot.health import HealthServer, Readiness, health_port
from tests.support import REPO

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def server():
    readiness = Readiness()
    health = HealthServer(readiness)
    await health.start("127.0.0.1", 0)
    yield health
    await health.stop()


async def scrape(health: HealthServer) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{health.port}/metrics") as response:
            assert response.status == 200
            return response.headers["Content-Type"], await response.text()


async def test_metrics_after_a_round_and_answers(chat, server):
    _, text = await scrape(server)
    before = parse(text)

    await chat.say("/discuss now")
    await chat.say("Teams need room to fail", who="bob")
    await chat.say("/discuss answer --anonymous a quiet worry", who="carol")
    await chat.say("/discuss close")

    content_type, text = await scrape(server)
    after = parse(text)
    assert content_type.startswith("text/plain; version=0.0.4")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("roundtable_rounds_opened_total", platform="console") == 1
    assert delta("roundtable_rounds_closed_total", platform="console") == 1
    assert delta("roundtable_answers_stored_total", platform="console", anonymous="false") == 1
    assert delta("roundtable_answers_stored_total", platform="console", anonymous="true") == 1
    assert delta("roundtable_events_received_total", platform="console", kind="CommandInvoked") == 3
    assert delta("roundtable_events_received_total", platform="console", kind="MessagePosted") == 1
    assert delta("roundtable_event_processing_seconds_count", platform="console") == 4
    assert value(after, "roundtable_messages_waiting") == 0  # everything was sent
    assert delta("roundtable_rounds_failed_total", platform="console", reason="error") == 0

    # Labels never carry who answered or what they wrote.
    label_values = {v for (_, labels) in after for _, v in labels}
    for private in ("bob", "Bob", "carol", "Carol", "Teams need room to fail", "quiet worry"):
        assert not any(private in v for v in label_values)
    assert "general" not in " ".join(label_values)  # nor which channel


async def test_a_failed_round_post_is_counted(chat, server):
    _, text = await scrape(server)
    before = parse(text)
    chat.platform.fail_channels.add(chat.channel)
    await chat.say("/discuss now")
    after = parse((await scrape(server))[1])
    name, labels = "roundtable_rounds_failed_total", {"platform": "console", "reason": "error"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1
    failed = "roundtable_messages_failed_total"
    labels = {"platform": "console", "kind": "RoundPost", "permanent": "false"}
    assert value(after, failed, **labels) - value(before, failed, **labels) == 1
    opened = "roundtable_rounds_opened_total"
    assert value(after, opened, platform="console") == value(before, opened, platform="console")


async def test_healthz_is_503_until_every_check_passes(server):
    ready = {"db": True, "slack": False}
    server.readiness.add("db", lambda: ready["db"])

    async def slack_connected() -> bool:
        return ready["slack"]

    server.readiness.add("slack", slack_connected)
    url = f"http://127.0.0.1:{server.port}/healthz"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 503
            assert await response.json() == {"ok": False, "checks": {"db": True, "slack": False}}
        ready["slack"] = True
        async with session.get(url) as response:
            assert response.status == 200


def test_the_health_port_is_off_unless_configured():
    assert health_port(Config(), env={}) is None
    assert health_port(Config(health=HealthSettings(port=9100)), env={}) == 9100
    env = {"ROUNDTABLE_HEALTH_PORT": "8080"}
    assert health_port(Config(health=HealthSettings(port=9100)), env=env) == 8080
    with pytest.raises(ValueError, match="ROUNDTABLE_HEALTH_PORT: 'http' is not a port"):
        health_port(Config(), env={"ROUNDTABLE_HEALTH_PORT": "http"})


def test_the_console_bot_serves_healthz_and_metrics(tmp_path):
    """`roundtable run` in console mode: the health port comes up, with the database check."""
    import shutil

    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "roundtable.yaml").write_text(
        "default_prompt_set: ai-research-culture\nhealth: {port: 0, host: 127.0.0.1}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    env.update(PYTHONUNBUFFERED="1", ROUNDTABLE_DATABASE_URL="", ROUNDTABLE_HEALTH_PORT="")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)  # a hung bot fails the test, never hangs it
    watchdog.start()
    try:
        port = None
        for line in process.stderr:  # the log says where it listens
            found = re.search(r"health and metrics on port (\d+)", line)
            if found:
                port = int(found[1])
                break
        assert port, "the health server did not start"
        process.stdin.write("/discuss now\nan answer\n")
        process.stdin.flush()
        for line in process.stdout:
            if line.startswith("Saved your answer"):
                break
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
            assert b'"database": true' in response.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            samples = parse(response.read().decode())
        assert value(samples, "roundtable_rounds_opened_total", platform="console") == 1
        assert value(samples, "roundtable_answers_stored_total", platform="console",
                     anonymous="false") == 1  # fmt: skip
    finally:
        watchdog.cancel()
        process.stdin.close()
        assert process.wait(timeout=60) == 0
        process.stdout.close()
        process.stderr.close()


def test_operations_doc_lists_every_metric():
    from bot import metrics

    doc = (REPO / "docs" / "operations.md").read_text()
    for family in metrics.REGISTRY.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        row = re.search(rf"^\| `{name}` \| {family.type} \|.+\|.+\|$", doc, re.M)
        assert row, f"docs/operations.md has no row for {name} ({family.type})"


async def test_messages_waiting_counts_undelivered_outbox_rows(chat, server):
    """The gauge asks the outbox at scrape time (the app registers the source)."""
    from bot import metrics
    from bot.health import outbox_waiting

    source = metrics.count_waiting(lambda: outbox_waiting(chat.store))
    try:
        await chat.say("/discuss now")  # delivered: nothing waits
        assert value(parse((await scrape(server))[1]), "roundtable_messages_waiting") == 0
        chat.platform.fail_channels.add(chat.channel)  # the digest stays owed
        await chat.say("/discuss close")
        assert value(parse((await scrape(server))[1]), "roundtable_messages_waiting") == 1
    finally:
        metrics.forget_waiting(source)
