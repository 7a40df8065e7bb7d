"""The files ``station.yaml`` names, opened the way ``menjin station run`` opens them.

:func:`station.config.load_station_config` checks the file itself (keys, types, the database's
dialect, the web page's exposure); this module also loads every key, certificate and password file
with the function the station uses, and looks for the SQLite folder and the database driver, so
that ``menjin station check-config`` reports at ``FILE:LINE:COL`` what ``station run`` would
otherwise stop on, and ``station run`` stops on it with the same lines instead of a traceback.

The signing key is needed only to send commands.  Without it the station still receives, stores
and shows everything, so a missing key is a warning saying what will not work; it is an error
when ``key_encryption_key`` is set, because gates with ``keys.provider: station`` get their face
key only in a signed ``unwrap`` command (their faces would never open a door).  A key file that
is there but unusable is always an error: it was meant to be used.
"""

from __future__ import annotations

import importlib.util
import ssl
from collections.abc import Iterator
from pathlib import Path

from station.commands import load_private_key
from station.config import (
    ConfigError,
    LoadedStation,
    StationConfig,
    read_station_config,
    sqlite_path,
)
from station.keyservice import KeyServiceError, load_kek
from station.mqtt import tls_context

Loc = tuple[str, ...]
#: (location, message, is a warning)
Issue = tuple[Loc, str, bool]
STATION_EXTRA = "pip install 'menjin[station]'"


def check_station_config(
    path: Path | str, *, check_files: bool = True,
) -> tuple[StationConfig, list[str]]:
    """Read, validate and (with ``check_files``) open what ``station.yaml`` names.

    Returns the config and its warnings (``FILE:LINE:COL: warning: key: message``); raises
    :class:`~station.config.ConfigError` listing every problem.
    """
    loaded = read_station_config(path)
    if not check_files:
        return loaded.config, []
    return loaded.config, file_problems(loaded)


def file_problems(loaded: LoadedStation) -> list[str]:
    """The warnings of the files ``loaded`` names; raises ConfigError for their problems."""
    issues = sorted(_issues(loaded.config), key=lambda issue: loaded.position(issue[0]))
    errors = [loaded.problem(loc, message) for loc, message, warning in issues if not warning]
    if errors:
        raise ConfigError(errors)
    return [loaded.problem(loc, message, warning=True) for loc, message, warning in issues
            if warning]


def _issues(config: StationConfig) -> Iterator[Issue]:
    yield from _database(config)
    yield from _signing_key(config)
    mqtt = config.mqtt
    if mqtt.password_file is not None:
        try:
            if not mqtt.password_file.read_text(encoding="utf-8").strip():
                yield (("mqtt", "password_file"),
                       f"{mqtt.password_file} is empty; write the broker password in it", False)
        except (OSError, UnicodeDecodeError) as exc:
            yield ("mqtt", "password_file"), _unreadable(mqtt.password_file, exc), False
    if mqtt.tls is not None:
        yield from _tls(config)
    if config.key_encryption_key is not None:
        try:
            load_kek(config.key_encryption_key)
        except (OSError, ValueError, KeyServiceError) as exc:
            yield (("key_encryption_key",), f"{_unreadable(config.key_encryption_key, exc)} "
                   "(menjin station kek writes one)", False)
    if config.card_hash_key_file is not None:
        yield from _card_key(config.card_hash_key_file)


def _tls(config: StationConfig) -> Iterator[Issue]:
    tls = config.mqtt.tls
    assert tls is not None
    files = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    missing = [(name, path) for name, path in files.items()
               if path is not None and not path.is_file()]
    for name, path in missing:
        yield ("mqtt", "tls", name), f"file not found: {path}", False
    if (tls.cert_file is None) != (tls.key_file is None):
        yield ("mqtt", "tls"), "cert_file and key_file go together", False
    elif not missing:
        try:
            tls_context(config.mqtt)
        except (OSError, ssl.SSLError, ValueError) as exc:
            yield (("mqtt", "tls", "ca_file"),
                   f"the TLS files cannot be used ({exc}): ca_file must be the PEM certificate "
                   "of the broker's CA, cert_file and key_file a matching pair", False)


def _unreadable(path: Path, exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {path}"
    if isinstance(exc, OSError):
        return f"cannot read {path}: {exc.strerror or exc}"
    return str(exc) if str(path) in str(exc) else f"{path}: {exc}"


def _database(config: StationConfig) -> Iterator[Issue]:
    url = config.database.url
    loc = ("database", "url")
    if importlib.util.find_spec("sqlalchemy") is None:
        yield loc, f"the station's database library is not installed: {STATION_EXTRA}", False
        return
    path = sqlite_path(url)
    if path is None:
        if url.lower().startswith("postgresql+psycopg") \
                and importlib.util.find_spec("psycopg") is None:
            yield loc, f"the psycopg driver is not installed: {STATION_EXTRA}", False
        return
    if path.is_dir():
        yield loc, f"{path} is a folder, not an SQLite file", False
    elif not path.parent.is_dir():
        yield (loc, f"the folder {path.parent} does not exist: create it, or put the database "
               "somewhere that exists (SQLite creates the file, not its folder)", False)


def _signing_key(config: StationConfig) -> Iterator[Issue]:
    path = config.signing_key
    try:
        load_private_key(path)
    except FileNotFoundError:
        create = f"create it with `menjin station keygen -o {path}`"
        if config.key_encryption_key is not None:
            yield (("signing_key",), f"no signing key at {path}: with key_encryption_key set, "
                   "the station answers the gates' key requests with signed commands, and "
                   f"without them no face opens a door; {create}", False)
        else:
            yield (("signing_key",), f"no signing key at {path}: the station receives, stores "
                   "and shows events but sends no command: open, mode, sync, enrol and resend "
                   "(page and command line) are refused, and missing events are not asked for "
                   f"again; {create}", True)
    except OSError as exc:
        yield ("signing_key",), _unreadable(path, exc), False
    except ValueError:
        yield (("signing_key",), f"{path} is not an Ed25519 private key in PEM form (the file "
               "`menjin station keygen` writes)", False)


def _card_key(path: Path) -> Iterator[Issue]:
    try:  # station.queries needs the database library; its absence is reported at database.url
        from station.queries import QueryError, read_card_key
    except ImportError:
        return
    try:
        read_card_key(path)
    except (OSError, QueryError) as exc:
        yield (("card_hash_key_file",), f"{_unreadable(path, exc)} (a gate exports it: menjin "
               "keys card-key --export FILE)", False)
