"""The demo's residents: who the scripted scenario lets in and who it refuses.

Written straight into the demo gate's resident store (and, when the face models and photos are
there, its encrypted face template store) before the daemon starts, exactly what a station sync
and `menjin enrol` would leave behind.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from daemon.configfile import load_config
from daemon.keyring import Keyring
from daemon.store import parse_group, parse_person

log = logging.getLogger(__name__)

RESIDENT = "p-0101"
VISITOR = "v-0042"
FACE_RESIDENT = "p-0203"
#: The opted-in resident's enrolment photos (folder under faces/enrol) and the probe photo the
#: demo shows to the camera (taken on another day than the enrolment photos).
FACE_ENROL_FOLDER = "obama"
FACE_PROBE_PHOTO = "probe/obama1.jpg"
#: Card numbers as the readers report them (decimal); the visitor's fits a 26-bit Wiegand card.
RESIDENT_CARD = "12345678"
UNKNOWN_CARD = "87654321"
VISITOR_CARD = "1193046"


@dataclass(frozen=True)
class DemoPeople:
    resident_card: str
    unknown_card: str
    visitor_card: str
    face_photo: Path | None


def seed(config_path: Path, faces: Path | None) -> DemoPeople:
    """Residents, an expired visitor and (with ``faces``) one face-enrolled resident."""
    config = load_config(config_path)
    zone = ZoneInfo(config.gate.timezone)
    yesterday = (dt.datetime.now(zone) - dt.timedelta(days=1)).date()
    persons: list[dict[str, object]] = [
        {"id": RESIDENT, "name": "Wang Fang", "groups": ["residents"], "cards": [RESIDENT_CARD]},
        {"id": VISITOR, "name": "Li Wei (visitor)", "kind": "visitor", "groups": ["residents"],
         "cards": [VISITOR_CARD], "valid_from": (yesterday - dt.timedelta(days=2)).isoformat(),
         "valid_until": yesterday.isoformat()},
    ]
    if faces is not None:
        persons.append({"id": FACE_RESIDENT, "name": "Zhang Min (face opt-in)",
                        "groups": ["residents"], "cards": ["55501234"],
                        "face_consent": {"date": "2026-10-01", "source": "demo consent form"}})
    group = {"id": "residents", "doors": list(config.doors), "schedule": "always"}
    with Keyring(config).open_store(config) as store:
        store.upsert([parse_person(p, zone=zone) for p in persons], groups=[parse_group(group)])
    face_photo = None
    if faces is not None:
        face_photo = _enrol_face(config_path, faces)
    return DemoPeople(RESIDENT_CARD, UNKNOWN_CARD, VISITOR_CARD, face_photo)


def _enrol_face(config_path: Path, faces: Path) -> Path | None:
    """Enrol the opted-in resident from their photos, as `menjin enrol` does; None on failure."""
    from daemon.faces import face_models, template_store
    from vision.enrol import enrol_photos

    config = load_config(config_path)
    assert config.vision is not None
    models = face_models(config.vision)
    photos = sorted((faces / "enrol" / FACE_ENROL_FOLDER).glob("*.jpg"))
    result = enrol_photos(photos, models.detector, models.embedder, models.thresholds,
                          models.refiner)
    if not result.templates:
        log.warning("demo: no usable enrolment photo in %s", faces / "enrol" / FACE_ENROL_FOLDER)
        return None
    template_store(config.vision, Keyring(config).template_key()).add(FACE_RESIDENT,
                                                                       result.matrix())
    return faces / FACE_PROBE_PHOTO
