"""The command line: ``roundtable`` and ``python -m bot`` are the same program."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from bot.config import Config, Secrets, resolve_config_path
from bot.yamlsource import ProblemsFound

log = logging.getLogger("bot")


def _print_problems(problems) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from bot.library import load_library

    try:
        library = load_library(resolve_config_path(args.config))
    except ProblemsFound as exc:
        _print_problems(exc.problems)
        n = len(exc.problems)
        print(f"{n} problem{'s' * (n != 1)} found.", file=sys.stderr)
        return 1
    print(f"OK: {library.summary()}.")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from bot.core import render
    from bot.core.events import RoundPost
    from bot.core.rounds import prompt_view
    from bot.library import load_library

    try:
        library = load_library(resolve_config_path(args.config))
    except ProblemsFound as exc:
        _print_problems(exc.problems)
        return 1
    if args.prompt_id:
        found = library.find_prompt(args.prompt_id)
        if found is None:
            ids = ", ".join(library.all_prompt_ids())
            print(f"unknown prompt id '{args.prompt_id}' (known: {ids})", file=sys.stderr)
            return 1
        prompt = found[1]
    else:
        channel = f"console:{library.config.console.channel}"
        loaded = library.set_for_channel(channel)
        prompt = loaded.prompts[0]
    post = RoundPost(0, "preview", "preview", prompt_view(prompt), True, preview=True)
    print(render.round_text(post))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from bot.prompts import PromptSet

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, model in (("config", Config), ("prompt-set", PromptSet)):
        path = out / f"{name}.schema.json"
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bot.app import build_runtime, run

    async def main() -> int:
        try:
            runtime = await build_runtime(
                resolve_config_path(args.config), secrets=Secrets.from_env()
            )
        except ProblemsFound as exc:
            _print_problems(exc.problems)
            print(
                "Refusing to start: fix the problems above (roundtable validate).", file=sys.stderr
            )
            return 1
        try:
            await run(runtime)
        finally:
            await runtime.close()
        return 0

    return asyncio.run(main())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roundtable",
        description="Roundtable runs recurring team discussions in Slack, Discord and the console.",
    )
    parser.add_argument(
        "--config",
        help="config file (default: $ROUNDTABLE_CONFIG or config/roundtable.yaml)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the bot (console adapter when no tokens are set)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="check the config and every prompt set")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("preview", help="print a prompt exactly as a round would post it")
    p.add_argument("prompt_id", nargs="?", help="prompt id (default: the first prompt)")
    p.set_defaults(func=cmd_preview)
    p = sub.add_parser("schema", help="write JSON Schemas for the config and prompt-set files")
    p.add_argument("--out", default="schemas", help="directory to write into (default: schemas)")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bot.logsetup import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_format, args.log_level, Secrets.from_env().values())
    return args.func(args)
