"""The keys of one gate, as its config names their providers (:mod:`daemon.keys`).

Two tiers, because cards must keep working when the network does not:

- *local* keys (``keys.card_provider``, default ``keys.provider``): the site's card hash key, the
  resident store key, the journal key and the pseudonym key.  Needed at boot, before any broker.
- *face* keys (``keys.provider``): face templates and portraits.  With ``station`` they exist
  only after the station unwrapped the data key; until then face entry waits.

The daemon keeps one :class:`Keyring` for its life (the station's key lives in it, in memory
only); every tool builds its own from the same config and reaches the same keys.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.config import GateConfig
from daemon.keys import (
    KeyProvider,
    KeyProviderError,
    LocalKeys,
    StationProvider,
    derive,
    load_local,
    provider,
)
from daemon.store import Store, pseudonym

__all__ = ["KeyProviderError", "Keyring"]


class Keyring:
    """The providers of one gate's config, and the keys derived from them (cached)."""

    def __init__(self, config: GateConfig) -> None:
        keys = config.keys
        self.dir = keys.dir
        local_kind = keys.card_provider or keys.provider
        if local_kind == "station":
            raise KeyProviderError("keys.provider station needs keys.card_provider (tpm2, "
                                   "rpi-otp or file): cards must work before the station answers")
        self.local_provider: KeyProvider = provider(local_kind, self.dir)
        self.face_provider: KeyProvider = (
            self.local_provider if keys.provider == local_kind else provider(keys.provider,
                                                                             self.dir))
        self._local: LocalKeys | None = None

    @property
    def station(self) -> StationProvider | None:
        """The station provider, when face keys come from the station."""
        face = self.face_provider
        return face if isinstance(face, StationProvider) else None

    def local(self) -> LocalKeys:
        """Card, store, journal and pseudonym keys; :class:`KeyProviderError` when the local
        provider cannot give its root key (a start-up error)."""
        if self._local is None:
            self._local = load_local(self.local_provider, self.dir)
        return self._local

    def face_ready(self) -> bool:
        """Whether the face keys can be had now (False: the station has not answered yet)."""
        try:
            self.face_provider.root_key()
        except KeyProviderError:
            return False
        return True

    def template_key(self) -> bytes:
        """AES-256-GCM key of ``templates.bin``; raises KeyUnavailableError before the station
        answered (provider ``station``)."""
        return derive(self.face_provider.root_key(), "templates")

    def pseudonym(self, person_id: str) -> str:
        """The keyed pseudonym of ``person_id`` (audit targets, logs, erased events)."""
        return pseudonym(self.local().pseudonyms, person_id)

    def card_hash(self, card: str) -> str:
        """The site's keyed hash of a canonical card number (what the station searches by)."""
        return hmac.new(self.local().card, card.encode(), hashlib.sha256).hexdigest()

    def open_store(self, config: GateConfig) -> Store:
        """The gate's resident store, with its card and row keys."""
        keys = self.local()
        return Store(config.access.db, card_key=keys.card, data_key=keys.store,
                     zone=ZoneInfo(config.gate.timezone))


def open_gate_store(config_path: Path) -> Store:
    """The resident store of the gate configured in ``config_path`` (tools, seeding, benches)."""
    from daemon.configfile import load_config

    config = load_config(config_path, check_files=False)
    return Keyring(config).open_store(config)
