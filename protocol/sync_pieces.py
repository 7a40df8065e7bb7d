"""A resident sync too large for one command, sent as signed pieces (``sync_part``).

A gate refuses command envelopes over 1 MiB, and a compound's 100,000 residents are some 20 MB
of JSON.  :func:`split_sync` cuts one ``sync`` payload (:mod:`protocol.sync`) into pieces that are
each a valid payload of the same mode and version carrying a slice of its lists, so the gate can
check every piece with the same models as it arrives and keep only one piece in memory at a time.
Each piece travels in its own signed envelope as ``sync_part`` args::

    {"transfer": "<32 hex>", "index": 0, "count": 25, "part": {"mode": "snapshot", ...}}

The gate stages the pieces and applies them together, in one transaction, only when all ``count``
pieces of the transfer are there; until then (and after an interrupted transfer) the previous
resident set stays in force.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

#: A piece's JSON (before the envelope) stays under this, well inside the gate's 1 MiB limit.
DEFAULT_PIECE_BYTES = 768 * 1024
#: A gate accepts transfers of at most this many pieces (some 7 GB of residents: no limit in
#: practice, a bound against a runaway sender).
MAX_PIECES = 10_000
TRANSFER_ID = re.compile(r"^[0-9a-f]{32}$")
#: The fields that stay whole in the first piece.
HEADER_FIELDS = ("mode", "version", "base_version")
SCALAR_FIELDS = ("holidays",)


class PieceError(ValueError):
    """``sync_part`` args that do not describe a piece; the text says which field."""


def new_transfer_id() -> str:
    return secrets.token_hex(16)


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def split_sync(
    args: Mapping[str, Any], max_bytes: int = DEFAULT_PIECE_BYTES
) -> list[dict[str, Any]]:
    """Cut a ``sync`` payload into pieces of at most about ``max_bytes`` of JSON each.

    Every piece has the payload's ``mode``, ``version`` (and ``base_version``); the first also
    carries ``holidays`` when present; list fields (persons, groups, revoked, upsert, delete, ...)
    are spread over the pieces in order.  A single record larger than ``max_bytes`` gets a piece
    of its own (the gate's envelope limit then refuses it).
    """
    header = {k: args[k] for k in HEADER_FIELDS if k in args}
    first = {**header, **{k: args[k] for k in SCALAR_FIELDS if k in args}}
    pieces: list[dict[str, Any]] = []
    current, size = first, _size(first)
    for key, value in args.items():
        if key in HEADER_FIELDS or key in SCALAR_FIELDS or not isinstance(value, list):
            continue
        for item in value:
            item_size = _size(item) + len(key) + 8
            if size + item_size > max_bytes and size > _size(header) + 2:
                pieces.append(current)
                current, size = dict(header), _size(header)
            current.setdefault(key, []).append(item)
            size += item_size
    pieces.append(current)
    return pieces


def piece_args(transfer: str, index: int, count: int, part: Mapping[str, Any]) -> dict[str, Any]:
    return {"transfer": transfer, "index": index, "count": count, "part": dict(part)}


def check_piece(args: Mapping[str, Any]) -> tuple[str, int, int, dict[str, Any]]:
    """(transfer, index, count, part) of ``sync_part`` args; :class:`PieceError` otherwise."""
    transfer, index, count, part = (args.get(k) for k in ("transfer", "index", "count", "part"))
    extra = set(args) - {"transfer", "index", "count", "part"}
    if extra:
        raise PieceError(f"unknown field(s): {', '.join(sorted(extra))}")
    if not isinstance(transfer, str) or not TRANSFER_ID.match(transfer):
        raise PieceError("transfer: 32 lowercase hex digits required")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PIECES:
        raise PieceError(f"count: an integer from 1 to {MAX_PIECES} required")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise PieceError("index: an integer from 0 to count - 1 required")
    if not isinstance(part, dict):
        raise PieceError("part: a sync payload object required")
    return transfer, index, count, part
