"""``roundtable discord invite-url``: exactly the scopes and the minimal permissions."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import discord

from bot.cli import main

MINIMAL = discord.Permissions(
    view_channel=True,
    send_messages=True,
    create_public_threads=True,
    send_messages_in_threads=True,
    embed_links=True,
    read_message_history=True,
)


def test_invite_url_reads_the_application_id_from_the_token(monkeypatch, capsys):
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "MTIzNDU2.secret.part")  # base64("123456")
    assert main(["discord", "invite-url"]) == 0
    out = capsys.readouterr().out.strip()
    query = parse_qs(urlsplit(out).query)
    assert query["client_id"] == ["123456"]
    assert query["scope"] == ["bot applications.commands"]
    assert int(query["permissions"][0]) == MINIMAL.value == 309237730304
    assert "secret" not in out


def test_invite_url_needs_an_application_id(monkeypatch, capsys):
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    assert main(["discord", "invite-url"]) == 1
    assert "--application-id" in capsys.readouterr().err
    assert main(["discord", "invite-url", "--application-id", "42"]) == 0
    assert "client_id=42" in capsys.readouterr().out
