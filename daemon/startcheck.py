"""What `menjin run` opens before the first door starts, tried by `menjin check-config`.

`menjin run` stops with status 78 when the GPIO library is missing, the state folder cannot be
made or the resident store cannot be opened; a config that passes `check-config` (with its file
checks) must not fail these.  Nothing here starts anything: the GPIO library is imported and no
chip opened, the state folder is looked at and not created, and only a resident store that
exists is opened (as the daemon opens it), for its residents' warnings too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon.access import face_only_warnings
from daemon.configfile import LoadedConfig, Problem
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError
from daemon.recovery import snapshot_path
from daemon.store import StoreError
from drivers.gpio import GpioBackendError, check_backend


def start_problems(loaded: LoadedConfig) -> tuple[list[Problem], list[str]]:
    """(problems that would stop `menjin run`, warnings about the resident data).

    A warning names a person set up for face entry without a card, or a damaged store that the
    daemon will set aside (:func:`daemon.recovery.open_store`): the config is fine, the resident
    data needs fixing.
    """
    cfg = loaded.config
    problems: list[Problem] = []
    warnings: list[str] = []
    try:
        check_backend(cfg.hardware.gpio_backend)
    except GpioBackendError as exc:
        problems.append(loaded.problem(("hardware", "gpio_backend"), str(exc)))
    folder = folder_problem(cfg.state_dir)
    if folder is not None:
        problems.append(loaded.problem(("state_dir",), folder))
    elif cfg.access.db.exists():
        try:
            with Keyring(cfg).open_store(cfg) as store:
                warnings = face_only_warnings(store.persons())
        except sqlite3.DatabaseError as exc:
            fallback = ("its last good snapshot" if snapshot_path(cfg.access.db).exists()
                        else "an EMPTY store")
            warnings = [f"the resident store {cfg.access.db} is damaged ({exc}): `menjin run` "
                        f"will move it aside and run on {fallback}; sync the residents from the "
                        "station or re-import them"]
        except (StoreError, KeyProviderError, OSError) as exc:
            problems.append(loaded.problem(
                ("access", "db"), f"the resident store {cfg.access.db} cannot be opened: {exc}"))
    return problems, warnings


def folder_problem(path: Path) -> str | None:
    """Why the daemon could not make ``path`` its folder (None when it exists or can be made)."""
    if path.exists():
        return None if path.is_dir() else f"{path} is a file, not a folder"
    ancestor = next(p for p in path.parents if p.exists())
    if not ancestor.is_dir():
        return f"{path} cannot be created: {ancestor} is a file, not a folder"
    return None
