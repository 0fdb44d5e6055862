"""compose.yaml cannot run here (no compose engine), so it is checked as data."""

from __future__ import annotations

import re

import yaml

from bot.config import Secrets, normalise_database_url
from tests.support import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))


def test_the_bot_and_postgresql_with_a_named_volume():
    spec = compose()
    assert set(spec["services"]) == {"bot", "db"}
    db = spec["services"]["db"]
    assert db["image"].startswith("postgres:")
    volume, _, mount = db["volumes"][0].partition(":")
    assert volume in spec["volumes"] and mount == "/var/lib/postgresql/data"
    bot = spec["services"]["bot"]
    assert bot["build"] == "."
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"


def test_health_checks_use_pg_isready_and_the_bots_healthz_port():
    services = compose()["services"]
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    bot = services["bot"]
    probe = " ".join(bot["healthcheck"]["test"])
    port = bot["environment"]["ROUNDTABLE_HEALTH_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in probe
    assert probe.startswith("CMD python")  # the image has python, not curl


def test_database_url_and_tokens_come_from_variables():
    services = compose()["services"]
    env = services["bot"]["environment"]
    url = env["ROUNDTABLE_DATABASE_URL"]
    db_env = services["db"]["environment"]
    user, database = db_env["POSTGRES_USER"], db_env["POSTGRES_DB"]
    assert re.fullmatch(
        rf"postgresql://{user}:\$\{{POSTGRES_PASSWORD[^}}]*\}}@db:5432/{database}", url
    )
    assert normalise_database_url(url).startswith("postgresql+asyncpg://")
    assert db_env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")  # required, no default
    for variable in Secrets.ENV.values():
        assert env[variable] == f"${{{variable}:-}}", f"{variable} must be passed through"
    text = (REPO / "compose.yaml").read_text()
    assert not re.search(r"xox[abp]-|xapp-", text)  # no token written into the file


def test_compose_is_documented():
    ops = (REPO / "docs" / "operations.md").read_text()
    assert "compose.yaml" in ops and "POSTGRES_PASSWORD" in ops and "pg_isready" in ops
