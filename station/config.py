"""``station.yaml``: the receiver's broker, database, portrait folder, web page and signing key.

Strict and frozen like the gate's config (unknown keys are errors with a "did you mean"), read
with the shared bounded YAML reader (:mod:`yamlconfig`), so an operator sees
``FILE:LINE:COL: path: message``.  Values may be ``${VAR}`` or ``${VAR:-default}``.  Relative
paths are relative to the working directory the station runs in (systemd: ``WorkingDirectory=``),
where ``menjin station keygen`` writes its key by default, never to the config file's folder.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml.comments import CommentedMap

from station.throttle import parse_networks
from yamlconfig import ProblemError, expand_env, read_yaml
from yamlconfig.choices import allowed_values, unknown_value

EX_CONFIG = 78  # sysexits.h; systemd's RestartPreventExitStatus stops a restart loop on it
#: The 2025 Measures require filing once face information of this many persons is stored.
FACE_FILING_THRESHOLD_PERSONS = 100_000
SECTIONS = ("mqtt", "database", "web")
#: SQLAlchemy dialect+driver names the store runs on, with an example URL of each.  Plain
#: ``postgresql://`` means the psycopg2 driver, which menjin does not install.
DATABASES = {
    "sqlite": "sqlite:///station.db",
    "sqlite+pysqlite": "sqlite+pysqlite:///station.db",
    "postgresql+psycopg": "postgresql+psycopg://user@host/db",
}
_URL_SCHEME = re.compile(r"([A-Za-z0-9+.\-]*)://")


class _Strict(BaseModel):
    # validate_default: default paths are resolved against the working directory too
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base_dir")
    if value is None or value.is_absolute() or base is None:
        return value
    return Path(base) / value


class TlsConfig(_Strict):
    ca_file: Path = Field(description="CA certificate that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="Client certificate, when the broker asks.")
    key_file: Path | None = Field(None, description="Private key of the client certificate.")

    _paths = field_validator("ca_file", "cert_file", "key_file")(_resolve)


class MqttConfig(_Strict):
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    prefix: str = Field("menjin", pattern=r"^[^#+/]+$", description="Topic prefix of the gates.")
    share_group: str = Field(
        "station", pattern=r"^[^#+/]+$",
        description="Shared-subscription group: receivers in one group split the gates' messages.",
    )
    client_id: str = Field(
        "", description="MQTT client id stem; receivers use <client_id>-receiver-<index>. Empty = "
        "derived from the host name, broker, prefix and share group (stable across restarts).",
    )
    session_expiry_seconds: int = Field(
        7 * 86_400, ge=60, le=2**32 - 2,
        description="How long the broker keeps a stopped receiver's session and queued events "
        "(default 7 days: longer than a station outage should last).",
    )
    username: str | None = Field(None, description="Broker user name.")
    password_file: Path | None = Field(None, description="File holding the broker password.")
    tls: TlsConfig | None = Field(None, description="TLS settings; absent = plain TCP.")
    keepalive_seconds: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval.")

    _paths = field_validator("password_file")(_resolve)


class DatabaseConfig(_Strict):
    url: str = Field(
        "sqlite:///station.db",
        description="SQLAlchemy URL: sqlite:///file.db (relative to the working directory) or "
        "postgresql+psycopg://user@host/db for larger stations.",
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="Events stored per transaction.")

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        """A URL whose dialect SQLAlchemy cannot load fails here, not as a traceback at run."""
        match = _URL_SCHEME.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a database URL; write {DATABASES['sqlite']} or "
                             f"{DATABASES['postgresql+psycopg']}")
        scheme = match.group(1).lower()
        if scheme not in DATABASES:
            close = difflib.get_close_matches(scheme, ["sqlite", "postgresql+psycopg"], 1, 0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if scheme.startswith("postgres"):
                hint += " (menjin installs the psycopg driver; postgresql:// alone means psycopg2)"
            raise ValueError(f"database {scheme!r} cannot be used: the station runs on sqlite "
                             f"({DATABASES['sqlite']}) or postgresql+psycopg "
                             f"({DATABASES['postgresql+psycopg']}){hint}")
        return value

    @field_validator("url")
    @classmethod
    def _sqlite_relative(cls, value: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base_dir")
        parts = _sqlite_parts(value)
        if base is None or parts is None or Path(parts[1]).is_absolute():
            return value
        head, file, tail = parts
        return head + str(Path(base) / file) + tail


class WebConfig(_Strict):
    enabled: bool = Field(True, description="Serve the web page.")
    bind: str = Field("127.0.0.1", description="Address to listen on; loopback by default.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the web page.")
    login: bool = Field(
        True, description="Require an operator account (menjin station user add); false is "
        "allowed only on a loopback bind and gives read-only access to whoever reaches it.",
    )
    session_hours: float = Field(12.0, gt=0, le=720, description="Sign-in lifetime.")
    page_size: int = Field(200, ge=1, le=5000, description="Passages shown per page.")
    timezone: str = Field("Asia/Shanghai", description="Time zone of the times shown and filtered.")
    trusted_proxies: tuple[str, ...] = Field(
        (), description="Addresses or networks of reverse proxies in front of the page whose "
        "X-Forwarded-For names the client (for sign-in throttling); empty = the header is ignored "
        "and the connection's address is the client.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai, UTC)") from None
        return value

    @property
    def is_loopback(self) -> bool:
        if self.bind == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            return False

    @property
    def exposure(self) -> str | None:
        """Why this page would show personal data to anyone who reaches it (None: it would not)."""
        if self.enabled and not self.login and not self.is_loopback:
            return (f"sign-in can be off (login: false) only when web.bind is loopback "
                    f"(127.0.0.1), not {self.bind}: anyone reaching the page would see the "
                    "passages; keep login: true and create accounts with `menjin station user "
                    "add`")
        return None


def _sqlite_parts(url: str) -> tuple[str, str, str] | None:
    """``sqlite:///a/b.db?x`` as ``("sqlite:///", "a/b.db", "?x")``; None: not an SQLite file."""
    match = _URL_SCHEME.match(url)
    if match is None or not match.group(1).lower().startswith("sqlite") \
            or url[match.end():match.end() + 1] != "/":
        return None
    file, sep, query = url[match.end() + 1:].partition("?")
    if file in ("", ":memory:"):
        return None
    return url[:match.end() + 1], file, sep + query


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None: another database, or in memory)."""
    parts = _sqlite_parts(url)
    return Path(parts[1]) if parts is not None else None


class StationConfig(_Strict):
    version: Literal[1] = Field(description="Config schema version.")
    mqtt: MqttConfig = Field(description="The gates' broker.")
    database: DatabaseConfig = Field(description="Event store.")
    portraits_dir: Path = Field(Path("portraits"), description="Folder for received portraits.")
    signing_key: Path = Field(
        Path("station_key.pem"), description="Ed25519 private key (PEM) that signs commands.",
    )
    command_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long a command waits for the gate's result.",
    )
    command_ttl_seconds: float = Field(
        60.0, gt=0, le=86_400, description="Validity of a signed command after it is issued.",
    )
    face_persons_warn_at: int = Field(
        90_000, ge=1, le=FACE_FILING_THRESHOLD_PERSONS,
        description="Warn when this many persons are enrolled for face entry across all gates "
        f"(filing is required at {FACE_FILING_THRESHOLD_PERSONS}).",
    )
    web: WebConfig = Field(description="Web page.")
    key_encryption_key: Path | None = Field(
        None,
        description="Hex key file that wraps the face keys of gates with keys.provider station "
        "(`menjin station keys kek`); keep it off the gates and out of backups of them.",
    )
    card_hash_key_file: Path | None = Field(
        None, description="The site's card-hash key, as `menjin keys card-key export` writes it "
        "on a gate, so the page finds passages by card number; absent = no search by card.",
    )

    _paths = field_validator("portraits_dir", "signing_key", "key_encryption_key",
                             "card_hash_key_file")(_resolve)

    @model_validator(mode="before")
    @classmethod
    def _absent_sections(cls, data: Any) -> Any:
        """An absent section is an empty one, so its paths are resolved like a written one."""
        if isinstance(data, dict):
            data = {**{name: {} for name in SECTIONS}, **data}
        return data


class ConfigError(Exception):
    """A station config that cannot be used; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = StationConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = None
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                inner = candidate
        if inner is None:
            return None
        model = inner
    return model


def _position(root: Any, loc: tuple[Any, ...], *, key: bool) -> tuple[int, int]:
    node, line, col = root, 0, 0
    for i, part in enumerate(loc):
        if not isinstance(node, CommentedMap) or part not in node:
            break
        at_key = (key and i == len(loc) - 1) or isinstance(node[part], dict)
        line, col = node.lc.key(part) if at_key else node.lc.value(part)
        node = node[part]
    return line + 1, col + 1


def _problem(file: str, root: Any, err: Any, source: Any) -> str:
    loc = tuple(err["loc"])
    dotted = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        line, col = _position(root, loc, key=True)
        model = _model_at(loc[:-1])
        msg = f"unknown key {loc[-1]!r}"
        known = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), known, 1)
        if close:
            msg += f"; did you mean {close[0]!r}?"
    elif err["type"] == "missing":
        line, col = _position(root, loc[:-1], key=True)
        msg = "required key is missing"
    else:
        line, col = _position(root, loc, key=False)
        model = _model_at(loc[:-1])
        info = model.model_fields.get(str(loc[-1])) if model is not None and loc else None
        choices = allowed_values(info.annotation) if info is not None else []
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] in ("literal_error", "enum") and choices:
            msg = unknown_value(err.get("input"), choices)
        elif err["type"] not in ("value_error",) and "input" in err:
            msg += f" (got {err['input']!r})"
        env = source(loc)
        if env:
            msg += f" (the value comes from the environment: {env})"
    return f"{file}:{line}:{col}: {dotted}: {msg}"


#: Keys only a gate config has: a file with these was given to the wrong command.
GATE_KEYS = frozenset({"gate", "doors", "readers", "hardware"})


@dataclass(frozen=True)
class LoadedStation:
    """A valid station config with the YAML positions, for problems found after validation."""

    config: StationConfig
    file: str
    root: Any = field(repr=False)

    def position(self, loc: tuple[str, ...]) -> tuple[int, int]:
        """1-based (line, column) of the value of ``loc`` (or of the nearest key above it)."""
        return _position(self.root, loc, key=False)

    def problem(self, loc: tuple[str, ...], message: str, *, warning: bool = False) -> str:
        """``FILE:LINE:COL: [warning: ]dotted.path: message`` at the value of ``loc``."""
        line, col = self.position(loc)
        kind = "warning: " if warning else ""
        return f"{self.file}:{line}:{col}: {kind}{'.'.join(loc)}: {message}"


def _rules(config: StationConfig) -> Iterator[tuple[tuple[str, ...], str]]:
    """Rules between values, at the value to change."""
    exposure = config.web.exposure
    if exposure is not None:
        yield ("web", "login"), exposure


def load_station_config(path: Path | str) -> StationConfig:
    """Read and validate ``station.yaml``; raises :class:`ConfigError` listing every problem.

    Opens no file but the config; :func:`station.configcheck.check_station_config` also opens
    the files it names, as ``menjin station run`` will.
    """
    return read_station_config(path).config


def read_station_config(path: Path | str) -> LoadedStation:
    """:func:`load_station_config` with the YAML positions kept."""
    path = Path(path)
    problems: list[str] = []
    try:
        file, root = read_yaml(path, hint=" (check the path; start from "
                                          "config/station.example.yaml)")
    except ProblemError as exc:
        if exc.parsed is None:
            raise ConfigError([str(p) for p in exc.problems]) from None
        # Duplicated keys: go on with each key's first value, so one run lists every problem.
        file, root, problems = str(path), exc.parsed, [str(p) for p in exc.problems]
    if root is None:
        raise ConfigError([f"{file}:1:1: the file is empty: a station config needs at least "
                           "version: 1 (start from config/station.example.yaml)"])
    if not isinstance(root, CommentedMap):
        raise ConfigError([f"{file}:1:1: the file must be a YAML mapping (key: value)"])
    if GATE_KEYS & set(root):
        raise ConfigError([f"{file}:1:1: this is a gate config (it has "
                           f"{', '.join(sorted(GATE_KEYS & set(root)))}): check it with "
                           f"menjin check-config {file}"])
    env = expand_env(root)
    for loc, names in env.missing.items():
        line, col = _position(root, loc, key=False)
        problems += [f"{file}:{line}:{col}: {'.'.join(str(p) for p in loc)}: environment "
                     f"variable {name} is not set (set it, or give a default: ${{{name}:-value}})"
                     for name in names]
    try:
        config = StationConfig.model_validate(root, context={"base_dir": Path.cwd()})
    except ValidationError as exc:
        problems += [_problem(file, root, err, env.describe) for err in exc.errors()]
        raise ConfigError(problems) from exc
    loaded = LoadedStation(config, file, root)
    problems += [loaded.problem(loc, message) for loc, message in _rules(config)]
    if problems:
        raise ConfigError(problems)
    return loaded
