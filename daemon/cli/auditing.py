"""Audit entries of the CLI: written by the running daemon, or under the chain's lock.

While the daemon runs it is the chain's one writer: the entry goes through its control socket,
where the kernel names the caller (``SO_PEERCRED``) and the daemon forwards it to the station at
once.  When no daemon answers, the entry is appended to the file under the chain's lock
(:class:`daemon.audit.AuditLog`), with this process's real user id as the actor, and the daemon
forwards it when it next starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from daemon import control
from daemon.audit import AuditLog, local_actor
from daemon.config import GateConfig

log = logging.getLogger(__name__)


def record(cfg: GateConfig, action: str, *, target: str | None,
           details: Mapping[str, Any]) -> None:
    """Audit ``action`` on ``target`` (a pseudonym, a door or a file; never a person id)."""
    try:
        asyncio.run(control.call(cfg.control.socket, "audit.record",
                                 {"action": action, "target": target, "details": dict(details)}))
        return
    except control.ControlUnavailableError:
        pass  # no daemon: the file lock keeps the chain whole
    except control.ControlError as exc:
        log.warning("the daemon did not take the audit entry (%s); writing it to the file", exc)
    AuditLog(cfg.privacy.audit_path).append(action, actor=local_actor(), target=target,
                                            details=details)
