"""The configuration file (``config/roundtable.yaml``): models, validation and loading.

Secrets never live here: tokens come from the environment only (see ``Secrets``).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from bot.yamlsource import ProblemsFound, SourceDoc, load_yaml

DEFAULT_CONFIG = Path("config/roundtable.yaml")
# Relative SQLite paths are relative to the config file's folder, like ``prompts_dir``:
# the shipped config/roundtable.yaml therefore keeps its data in data/roundtable.db.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///../data/roundtable.db"
CHANNEL_SCHEMES = ("slack", "discord", "console")


def default_data_dir(config_path: Path) -> Path:
    """The folder of the default database (and of the key file when the database is not a
    SQLite file): ``data/`` beside the config folder, whatever the working directory."""
    return (config_path.parent / "../data").resolve()


_DURATION = re.compile(r"(\d+)\s*([wdhms])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Ten years: longer is a typo, and dates this far out overflow date arithmetic.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: object) -> timedelta:
    """Parse ``"2d"``, ``"36h"``, ``"1d 12h"`` or ``"90m"`` into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '2d', '36h' or '90m'")
    text = value.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"'{value}' is not a duration; use e.g. '2d', '36h', '1d 12h', '90m'")
    total = timedelta()
    try:
        for amount, unit in parts:
            if len(amount) > 12:
                raise OverflowError
            total += timedelta(**{_UNITS[unit]: int(amount)})
    except OverflowError:
        total = MAX_DURATION + timedelta(days=1)
    if total <= timedelta(0):
        raise ValueError("a duration must be longer than zero")
    if total > MAX_DURATION:
        raise ValueError(f"'{value}' is too long; a duration is at most {MAX_DURATION.days}d")
    return total


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(out) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\s*\d+\s*[wdhms])+\s*$"}),
]


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: e.g. a name too long
        raise ValueError(
            f"unknown time zone '{value}' (use an IANA name like Europe/Berlin)"
        ) from None
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Order(StrEnum):
    sequential = "sequential"
    shuffle = "shuffle"


class DateRange(Strict):
    """Days (inclusive) on which a schedule posts nothing; one day has start == end."""

    start: date
    end: date

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end


def _parse_day(value: object, what: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return date.fromisoformat(text)
        except ValueError as exc:
            if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", text):  # the shape is right, the day is not
                raise ValueError(f"{what}: '{value}' is not a valid date ({exc})") from None
    raise ValueError(f"{what}: '{value}' is not a date; write it as 2026-12-24")


def parse_skip_date(value: object) -> object:
    """``2026-12-24`` or ``{from: 2026-12-24, to: 2027-01-01}`` (both days included)."""
    if isinstance(value, DateRange):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"from", "to"})
        if unknown or "from" not in value or "to" not in value:
            raise ValueError(
                "a date range is written {from: 2026-12-24, to: 2027-01-01}"
                + (f" (unknown key '{unknown[0]}')" if unknown else "")
            )
        start, end = _parse_day(value["from"], "from"), _parse_day(value["to"], "to")
        if end < start:
            raise ValueError(f"the range ends ({end}) before it starts ({start})")
        return DateRange(start=start, end=end)
    day = _parse_day(value, "skip date")
    return DateRange(start=day, end=day)


SkipDate = Annotated[
    DateRange,
    BeforeValidator(parse_skip_date),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date"},
                {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string", "format": "date"},
                        "to": {"type": "string", "format": "date"},
                    },
                    "required": ["from", "to"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]


class HolidayCalendar(Strict):
    """Public holidays from the ``holidays`` package, e.g. ``{country: DE, subdivision: BE}``."""

    country: str = Field(description="ISO 3166-1 country code, e.g. DE, US, GB.")
    subdivision: str | None = Field(default=None, description="State/province code, e.g. BE.")

    @field_validator("country")
    @classmethod
    def _country(cls, v: str) -> str:
        import holidays

        v = v.strip().upper()
        if v not in holidays.list_supported_countries():
            raise ValueError(f"unknown country code '{v}' (use an ISO code such as DE, US, GB)")
        return v

    @model_validator(mode="after")
    def _subdivision(self) -> HolidayCalendar:
        import holidays

        if self.subdivision is not None:
            known = holidays.list_supported_countries().get(self.country, [])
            if self.subdivision not in known:
                shown = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
                raise ValueError(
                    f"'{self.subdivision}' is not a subdivision of {self.country}"
                    + (f" (known: {shown})" if known else " (it has none)")
                )
        return self

    def name_of(self, day: date) -> str | None:
        """The holiday's name on ``day``, or None."""
        return _calendar(self.country, self.subdivision).get(day)


@functools.lru_cache(maxsize=32)
def _calendar(country: str, subdivision: str | None):
    import holidays

    return holidays.country_holidays(country, subdiv=subdivision)


class Schedule(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Stable name of the schedule.")
    prompt_set: str = Field(description="File name (without .yaml) of a set in prompts/.")
    cron: str = Field(description="Five-field cron expression, e.g. '0 10 * * mon'.")
    timezone: str | None = Field(default=None, description="IANA zone; defaults to top-level.")
    channels: list[str] = Field(description="Targets: slack:C…, discord:<id>, console:<name>.")
    order: Order = Order.sequential
    reminder_after: Duration | None = None
    close_after: Duration | None = None
    catch_up_within: Duration = timedelta(hours=6)
    anonymous_answers: Literal["allowed", "off"] = "allowed"
    min_anonymous_group: int = Field(default=3, ge=1)
    when_exhausted: Literal["restart", "stop"] = Field(
        default="restart",
        description="When every prompt was used: start a new pass (reshuffled when "
        "order is shuffle) or stop posting until prompts are added.",
    )
    skip_dates: list[SkipDate] = Field(
        default_factory=list,
        description="Days with no round: 2026-12-24 or {from: 2026-12-24, to: 2027-01-01}.",
    )
    holidays: HolidayCalendar | None = Field(
        default=None, description="Skip public holidays, e.g. {country: DE, subdivision: BE}."
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Delete this schedule's ended rounds and their answers after this many "
        "days; defaults to the top-level retention_days.",
    )

    def skip_reason(self, day: date) -> str | None:
        """Why no round is posted on this local date (holiday or skip date), or None."""
        if self.holidays is not None:
            name = self.holidays.name_of(day)
            if name:
                return f"holiday: {name}"
        if any(day in r for r in self.skip_dates):
            return "skip date"
        return None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else _check_zone(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(
                f"'{v}' is not a five-field cron expression (minute hour day month weekday)"
            )
        try:
            CronTrigger.from_crontab(v, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression '{v}': {exc}") from None
        return v

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("a schedule needs at least one channel")
        for ch in v:
            check_channel(ch)
        return v


_CHANNEL_IDS = {
    "slack": (re.compile(r"[A-Z0-9]{1,40}"), "a Slack channel ID such as C0123ABCD, not its name"),
    "discord": (re.compile(r"[0-9]{1,20}"), "a Discord channel ID, a number such as 1234567890"),
    "console": (re.compile(r"[^\s:]{1,80}"), "a console channel name without spaces"),
}


def check_channel(ref: str) -> str:
    """``slack:C0123``, ``discord:<numeric id>`` or ``console:<name>``; else ValueError."""
    scheme, _, rest = ref.partition(":")
    if scheme not in CHANNEL_SCHEMES or not rest:
        raise ValueError(
            f"'{ref}' is not a channel; write slack:C0123, discord:<channel id> or console:<name>"
        )
    pattern, what = _CHANNEL_IDS[scheme]
    if not pattern.fullmatch(rest):
        raise ValueError(f"'{ref}' is not a channel: after '{scheme}:' comes {what}")
    return ref


class Admins(Strict):
    slack: list[str] = Field(default_factory=list, description="Slack user ids (U…).")
    discord: list[str] = Field(
        default_factory=list, description="Discord user ids, or role ids written 'role:<id>'."
    )

    def allows(self, platform: str, user_id: str, role_ids: tuple[str, ...] = ()) -> bool:
        """Is this user an admin on this platform? Discord roles are written ``role:<id>``."""
        listed = getattr(self, platform, ())  # a handful of ids: a list is fine
        return user_id in listed or any(f"role:{r}" in listed for r in role_ids)


class SlackSettings(Strict):
    mode: Literal["socket", "http"] = "socket"
    host: str = Field(
        default="0.0.0.0",
        min_length=1,
        description="Address /healthz and /slack/events listen on; 127.0.0.1 behind a local reverse proxy.",
    )
    port: int = Field(default=3000, ge=1, le=65535)
    api_url: str = "https://slack.com/api/"


class DiscordSettings(Strict):
    guild_ids: list[int] = Field(default_factory=list)
    read_thread_replies: bool = False
    api_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"


class ConsoleSettings(Strict):
    channel: str = Field(default="general", description="Channel name the console talks in.")
    user: str = Field(default="you", description="Who you are in the console.")


class HealthSettings(Strict):
    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port for /healthz and /metrics in every mode; none: off. "
        "ROUNDTABLE_HEALTH_PORT wins over this.",
    )
    host: str = Field(default="0.0.0.0", description="Address the health port listens on.")


class Config(Strict):
    """The file format of ``config/roundtable.yaml``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"title": "Roundtable configuration"}
    )
    timezone: str = Field(default="UTC", description="Default IANA time zone for schedules.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; ROUNDTABLE_DATABASE_URL wins over this."
    )
    prompts_dir: str = Field(default="../prompts", description="Relative to this file.")
    default_prompt_set: str | None = Field(
        default=None, description="Set used in channels that no schedule targets."
    )
    admins: Admins = Admins()
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Delete ended rounds and their answers after this many days (a daily "
        "job; posts on the platform stay). Off when unset.",
    )
    schedules: list[Schedule] = Field(default_factory=list)
    slack: SlackSettings = SlackSettings()
    discord: DiscordSettings = DiscordSettings()
    console: ConsoleSettings = ConsoleSettings()
    health: HealthSettings = HealthSettings()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _check_zone(v)

    @field_validator("prompts_dir")
    @classmethod
    def _prompts_dir(cls, v: str) -> str:
        return check_path_text(v)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        return None if v is None else check_database_url(v)

    @field_validator("schedules")
    @classmethod
    def _unique_names(cls, v: list[Schedule]) -> list[Schedule]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schedule names must be unique; repeated: {', '.join(dupes)}")
        return v

    def zone_of(self, schedule: Schedule) -> ZoneInfo:
        return ZoneInfo(schedule.timezone or self.timezone)

    def schedule_named(self, name: str) -> Schedule | None:
        return next((s for s in self.schedules if s.name == name), None)

    def schedules_for(self, channel: str) -> list[Schedule]:
        return [s for s in self.schedules if channel in s.channels]


def check_path_text(value: str) -> str:
    """A path the file system can take: no control characters, not absurdly long."""
    if not value.strip():
        raise ValueError("the path is empty")
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"the path contains the control character U+{ord(bad):04X}")
    if len(value.encode("utf-8", "surrogatepass")) > 1024 or any(
        len(part.encode("utf-8", "surrogatepass")) > 255 for part in value.split("/")
    ):
        raise ValueError("the path is too long (at most 1024 bytes, 255 per folder name)")
    return value


def check_database_url(url: str) -> str:
    """A SQLAlchemy URL for SQLite or PostgreSQL (checked without connecting)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shape = "write it like sqlite:///data/roundtable.db or postgresql://user@host/dbname"
    try:
        backend = make_url(normalise_database_url(url)).get_backend_name()
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL; {shape}") from None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database '{backend}'; {shape}")
    return url


@dataclass(frozen=True)
class Secrets:
    """Credentials, from the environment only. ``repr`` never shows values."""

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    discord_bot_token: str | None = None

    ENV: ClassVar[dict[str, str]] = {
        "slack_bot_token": "SLACK_BOT_TOKEN",
        "slack_signing_secret": "SLACK_SIGNING_SECRET",
        "slack_app_token": "SLACK_APP_TOKEN",
        "discord_bot_token": "DISCORD_BOT_TOKEN",
    }

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Secrets:
        env = dict(os.environ if env is None else env)
        return cls(**{field: env.get(var) or None for field, var in cls.ENV.items()})

    def values(self) -> list[str]:
        return [v for v in (getattr(self, f) for f in self.ENV) if v]

    def __repr__(self) -> str:
        present = [var for f, var in self.ENV.items() if getattr(self, f)]
        return f"Secrets(present={present})"

    @property
    def slack(self) -> bool:
        return bool(self.slack_bot_token)

    @property
    def discord(self) -> bool:
        return bool(self.discord_bot_token)


def resolve_config_path(cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get("ROUNDTABLE_CONFIG") or DEFAULT_CONFIG)


def load_config(path: Path, display: str | None = None):
    """Load and validate the config file; returns (Config, SourceDoc) or raises ProblemsFound."""
    return validate_config(load_yaml(path, display))


def validate_config(doc: SourceDoc) -> tuple[Config, SourceDoc]:
    """Validate parsed config data; raise ProblemsFound with every problem, never another error."""
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ProblemsFound([doc.problem((), "the config file must be a mapping of keys")])
    try:
        return Config.model_validate(data), doc
    except ValidationError as exc:
        raise ProblemsFound(doc.problems_from(exc)) from None
    except (RecursionError, MemoryError, OverflowError, OSError, TypeError) as exc:
        # a validator met input nobody foresaw: still a problem report, never a crash
        raise ProblemsFound(
            [doc.problem((), f"cannot validate this file ({type(exc).__name__}: {exc})")]
        ) from None


def database_url(
    config: Config, env: dict[str, str] | None = None, *, config_path: Path | None = None
) -> str:
    """The database URL to use, normalised to an async driver.

    A relative SQLite path (from the environment, the config or the default) is resolved
    against the config file's folder, so ``run``, ``history`` and ``plan`` open the same
    database from any working directory.
    """
    env = os.environ if env is None else env
    url = env.get("ROUNDTABLE_DATABASE_URL") or config.database_url or DEFAULT_DATABASE_URL
    base = (config_path or resolve_config_path(None)).parent
    return anchor_sqlite_path(normalise_database_url(url), base)


def anchor_sqlite_path(url: str, base: Path) -> str:
    """``url`` with a relative SQLite file path made absolute against ``base``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return url
    if path.startswith("file:") or Path(path).is_absolute():
        return url
    return parsed.set(database=str((base / path).resolve())).render_as_string(hide_password=False)


def normalise_database_url(url: str) -> str:
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url
