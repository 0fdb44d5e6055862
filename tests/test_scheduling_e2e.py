"""End to end: ``python -m bot run`` on the console opens a due round exactly once.

The schedule's time is two minutes before the real now, so the round is due when the
bot starts and, being within ``catch_up_within``, opens on start: nothing waits for a
cron minute to come round. The next occurrence is a day away.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

from tests.support import REPO, write_library


async def test_bot_run_posts_a_due_round_once_on_the_console(tmp_path):
    due = datetime.now(UTC) - timedelta(minutes=2)
    config = write_library(
        tmp_path,
        "timezone: UTC\nprompts_dir: ../prompts\nschedules:\n"
        f'  - name: daily\n    prompt_set: mini\n    cron: "{due.minute} {due.hour} * * *"\n'
        "    channels: [console:general]\n",
    )
    env = dict(os.environ, ROUNDTABLE_DATABASE_URL=f"sqlite:///{tmp_path / 'rt.db'}")
    for var in ("SLACK_BOT_TOKEN", "DISCORD_BOT_TOKEN"):
        env.pop(var, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(config),
        "run",
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    seen = []
    try:
        async with asyncio.timeout(45):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "the bot exited before posting the round"
                seen.append(line)
                if line.startswith("== Round"):
                    break
            # ask when the next one is, then end the console (end of input)
            proc.stdin.write(b"/discuss next\n")
            await proc.stdin.drain()
            proc.stdin.close()
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "".join(seen) + out.decode()
    assert proc.returncode == 0, err.decode()
    assert text.count("== Round") == 1
    assert "Alpha article" in text
    assert "Next scheduled round here:" in text  # /discuss next: when, in the zone
