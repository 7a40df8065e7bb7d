"""SIGHUP: apply a valid new config part by part, or keep the running one and say why.

Only parts whose config slice changed restart (:meth:`daemon.parts.Parts.apply`); sections that
cannot change under a running daemon (files, identity, hardware) are refused with
``config.rejected`` (``needs_restart``), and an invalid file with ``config.rejected``
(``invalid``, one FILE:LINE:COL line per problem).  Any error while reading, parsing or
validating (the loader raises only :class:`~daemon.configfile.ConfigError`) or applying the new
config keeps the old one running; a failed apply returns every part to the old config
(``config.rejected``, ``apply_failed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from daemon import logsetup
from daemon.config import GateConfig
from daemon.configfile import ConfigError, load_config
from daemon.events import Emit, Event
from daemon.notify import Notifier
from daemon.upkeep import AuditTrail

log = logging.getLogger(__name__)

#: Config sections that cannot change under a running daemon (files, identity, hardware).
RESTART_ONLY_SECTIONS = ("version", "state_dir", "gate", "hardware", "journal", "access", "control")


class Reloader:
    """Reads the config file again and hands a valid new config to ``adopt``."""

    def __init__(self, path: Path, *, current: Callable[[], GateConfig],
                 adopt: Callable[[GateConfig], Awaitable[list[str]]], emit: Emit,
                 audit: AuditTrail, notifier: Notifier, summary: Callable[[], str]) -> None:
        self._path = path
        self._current = current
        self._adopt = adopt
        self._emit = emit
        self._audit = audit
        self._notifier = notifier
        self._summary = summary
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Apply the file if it is valid and changes only reloadable sections; True if applied."""
        async with self._lock:
            self._notifier.reloading()
            try:
                return await self._reload()
            finally:
                self._notifier.ready(self._summary())

    async def _reload(self) -> bool:
        try:
            new = await asyncio.to_thread(load_config, self._path)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            log.error("config reload rejected, still running on the previous config:\n%s",
                      "\n".join(problems))
            self._emit(Event("config.rejected", reason="invalid", data={"problems": problems}))
            return False
        old = self._current()
        fixed = [s for s in RESTART_ONLY_SECTIONS if getattr(new, s) != getattr(old, s)]
        if fixed:
            message = f"changing {', '.join(fixed)} needs a restart (systemctl restart menjin)"
            log.error("config reload rejected, still running on the previous config: %s", message)
            self._emit(Event("config.rejected", reason="needs_restart",
                             data={"problems": [message], "sections": fixed}))
            return False
        try:
            changed = await self._switch(new)
        except Exception as exc:  # a part that cannot be set up: back to what ran before
            problem = f"{self._path}:1:1: cannot apply: {exc}"
            try:
                await self._switch(old)
            except Exception:
                log.exception("could not return every part to the previous config")
            log.error("config reload rejected, still running on the previous config: %s", problem)
            self._emit(Event("config.rejected", reason="apply_failed",
                             data={"problems": [problem]}))
            return False
        log.info("config reloaded; restarted parts: %s", ", ".join(changed) or "none")
        self._emit(Event("config.reloaded", data={"changed": changed}))
        await self._audit.record("config.reload", actor="signal:SIGHUP",
                                 details={"changed": changed})
        return True

    async def _switch(self, config: GateConfig) -> list[str]:
        logsetup.configure(config.logging.level, config.logging.components)
        return await self._adopt(config)
