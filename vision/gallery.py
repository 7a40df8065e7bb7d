"""The enrolled gallery: 1:N search over persons x templates, and its encrypted store.

Search is one matrix-vector product of the probe with every template, then one score per person
from ALL of their templates (the templates of one person are kept contiguous, so that is one
``np.add.reduceat``, skipped when every person has exactly one template).  The person score
(``scoring``) is by default the mean of the template scores: with the single best template
(``max``) one poor or unusual enrolment photo decides alone.  On the East-Asian dev set the mean
narrowed the impostor tail so much that the threshold rule needs 0.59 instead of 0.66 (paddlex),
for as many genuine accepts as the best template had at 0.60 (docs/vision.md).  ``centroid`` (the
cosine with the normalised mean template) is kept for the evaluation.  A probe is accepted only
when the best person is above the threshold AND ahead of the best *other* person by the margin: two
residents who look alike must not open each other's doors.

The product is ``np.einsum``, not ``matrix @ probe``: for one probe against a C-contiguous float32
matrix, OpenBLAS's row-major sgemv reads the matrix at about half the memory bandwidth that einsum's
SIMD loop reaches (100k x 512 templates, one thread: ~17 ms against ~9 ms; docs/vision.md).  Both
release the GIL.

Templates are sensitive personal information (PIPL art. 28): the store encrypts them at rest with
AES-256-GCM.  A missing or wrong key is an error the caller must surface, never a reason to start
over with an empty gallery (which would silently unenrol everybody).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

NO_SCORE = -1.0
SCORINGS = ("mean", "max", "centroid")
DEFAULT_SCORING = "mean"


@dataclass(frozen=True)
class Match:
    """Outcome of one search; ``person`` is None when nobody was accepted."""

    person: str | None
    score: float
    second_person: str | None
    second_score: float
    best_person: str | None = None

    @property
    def margin(self) -> float:
        return self.score - self.second_score


@dataclass(frozen=True)
class _Index:
    """The search matrix: every template, grouped by person; rebuilt after a change."""

    matrix: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    persons: list[str]
    one_template_each: bool
    centroids: np.ndarray | None


class Gallery:
    """Templates (unit vectors) of enrolled persons, several per person.

    Changes (enrolment from the station, erasure) may come from another thread than the searches
    of the vision worker: a lock guards the templates, and a search works on an immutable index
    built lazily after the last change, so adding 100k persons one by one stays linear.
    """

    def __init__(
        self, dim: int, *, threshold: float, margin: float, scoring: str = DEFAULT_SCORING
    ) -> None:
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
        self.dim = dim
        self.threshold = threshold
        self.margin = margin
        self.scoring = scoring
        self._templates: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._index: _Index | None = None

    def __len__(self) -> int:
        """Number of templates."""
        with self._lock:
            return sum(len(rows) for rows in self._templates.values())

    def __contains__(self, person: object) -> bool:
        return person in self._templates

    def persons(self) -> list[str]:
        with self._lock:
            return list(self._templates)

    def templates(self, person: str) -> np.ndarray:
        with self._lock:
            return self._templates[person].copy()

    def as_dict(self) -> dict[str, np.ndarray]:
        with self._lock:
            return {p: t.copy() for p, t in self._templates.items()}

    def add(self, person: str, templates: np.ndarray) -> None:
        """Append templates (n x dim, or one vector) to ``person``."""
        rows = self._unit_rows(templates)
        with self._lock:
            old = self._templates.get(person)
            self._templates[person] = rows if old is None else np.vstack([old, rows])
            self._index = None

    def replace(self, person: str, templates: np.ndarray) -> None:
        """Set ``person``'s templates to exactly these (searches never see the person missing)."""
        rows = self._unit_rows(templates)
        with self._lock:
            self._templates[person] = rows
            self._index = None

    def _unit_rows(self, templates: np.ndarray) -> np.ndarray:
        rows = np.asarray(templates, dtype=np.float32).reshape(-1, self.dim)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        if not len(rows) or np.any(norms == 0):
            raise ValueError("templates must be non-empty, non-zero vectors")
        return np.asarray(rows / norms, dtype=np.float32)

    def remove(self, person: str) -> bool:
        """Drop all templates of ``person``; False when there were none."""
        with self._lock:
            if self._templates.pop(person, None) is None:
                return False
            self._index = None
            return True

    def _current(self) -> _Index:
        """The index of the current templates; after building it, each person's templates become
        views into the matrix, so a large gallery is held in memory once, not twice."""
        with self._lock:
            if self._index is None:
                persons = list(self._templates)
                counts = [len(self._templates[p]) for p in persons]
                rows = [self._templates[p] for p in persons]
                matrix = np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
                matrix = np.ascontiguousarray(matrix, dtype=np.float32)
                starts = np.cumsum([0, *counts])[:-1].astype(np.intp)
                for person, start, count in zip(persons, starts, counts, strict=True):
                    self._templates[person] = matrix[start : start + count]
                centroids = None
                if self.scoring == "centroid" and persons:
                    sums = np.add.reduceat(matrix, starts, axis=0)
                    norms = np.linalg.norm(sums, axis=1, keepdims=True)
                    centroids = np.ascontiguousarray(sums / np.maximum(norms, 1e-12), np.float32)
                self._index = _Index(
                    matrix, starts, np.asarray(counts, dtype=np.float32), persons,
                    len(matrix) == len(persons), centroids,
                )
            return self._index

    def person_scores(self, embedding: np.ndarray) -> np.ndarray:
        """Score per person (see ``scoring``), in ``persons()`` order."""
        return self._scores(self._current(), embedding)

    def _scores(self, index: _Index, embedding: np.ndarray) -> np.ndarray:
        """A new array the caller owns (``search`` masks the best person in it)."""
        if not index.persons:
            return np.zeros(0, dtype=np.float32)
        probe = np.ascontiguousarray(embedding, dtype=np.float32).reshape(self.dim)
        if index.centroids is not None:
            return np.asarray(np.einsum("ij,j->i", index.centroids, probe, optimize=False))
        scores: np.ndarray = np.einsum("ij,j->i", index.matrix, probe, optimize=False)
        if index.one_template_each:
            return scores
        if self.scoring == "max":
            return np.maximum.reduceat(scores, index.starts)
        return np.asarray(np.add.reduceat(scores, index.starts) / index.counts, dtype=np.float32)

    def search(self, embedding: np.ndarray) -> Match:
        """Best person if above the threshold and ahead of the best other person by the margin.

        Ties go to the person first in ``persons()`` order (``argmax`` keeps the lowest index)."""
        index = self._current()
        per_person = self._scores(index, embedding)
        if not per_person.size:
            return Match(None, NO_SCORE, None, NO_SCORE)
        first = int(per_person.argmax())
        score = float(per_person[first])
        second_person, second_score = None, NO_SCORE
        if per_person.size > 1:
            per_person[first] = -np.inf
            second = int(per_person.argmax())
            second_person, second_score = index.persons[second], float(per_person[second])
        best = index.persons[first]
        accepted = score >= self.threshold and score - second_score >= self.margin
        return Match(best if accepted else None, score, second_person, second_score, best)


class TemplateStoreError(Exception):
    """The template store cannot be read: wrong key, damaged file, or another model's templates."""


_MAGIC = b"MJTPL1"
_NONCE_BYTES = 12
_KEY_BYTES = 32
_FILE_MODE = 0o600


class TemplateStore:
    """One encrypted file holding every person's templates for one embedding model.

    The file is ``MAGIC || nonce || AES-256-GCM(json)``; the magic is authenticated too.  The model
    kind and dimension are stored inside, so templates of one model are never compared with probes
    of another after a config change.  Writes go to a temporary file, fsynced, then renamed.
    """

    def __init__(self, path: Path | str, key: bytes, *, model: str) -> None:
        if len(key) != _KEY_BYTES:
            raise TemplateStoreError(
                f"template key must be {_KEY_BYTES} bytes (AES-256), got {len(key)}"
            )
        self.path = Path(path)
        self.model = model
        self._aead = AESGCM(key)

    def load(self) -> dict[str, np.ndarray]:
        """All templates by person; empty only when the file does not exist yet."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _NONCE_BYTES:
            raise TemplateStoreError(f"{self.path}: not a menjin template store")
        nonce = blob[len(_MAGIC) : len(_MAGIC) + _NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, blob[len(_MAGIC) + _NONCE_BYTES :], _MAGIC)
        except InvalidTag:
            raise TemplateStoreError(
                f"{self.path}: cannot decrypt the face templates: wrong key or damaged file "
                "(restore the key file; the store is not recreated, to avoid silently "
                "unenrolling everybody)"
            ) from None
        doc = json.loads(plain)
        if doc.get("model") != self.model:
            raise TemplateStoreError(
                f"{self.path}: templates were made with model {doc.get('model')!r}, the config "
                f"names {self.model!r}; re-enrol the persons (templates of different models "
                "cannot be compared)"
            )
        dim = int(doc["dim"])
        return {
            person: np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(-1, dim).copy()
            for person, data in doc["persons"].items()
        }

    def save(self, templates: Mapping[str, np.ndarray]) -> None:
        """Replace the whole store with ``templates``."""
        dims = {np.atleast_2d(t).shape[1] for t in templates.values()}
        if len(dims) > 1:
            raise ValueError(f"templates of different sizes: {sorted(dims)}")
        doc = {
            "v": 1,
            "model": self.model,
            "dim": dims.pop() if dims else 0,
            "persons": {
                person: base64.b64encode(np.asarray(t, dtype="<f4").tobytes()).decode("ascii")
                for person, t in templates.items()
            },
        }
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = _MAGIC + nonce + self._aead.encrypt(nonce, json.dumps(doc).encode(), _MAGIC)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        try:
            os.write(fd, sealed)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)

    def load_gallery(
        self, dim: int, *, threshold: float, margin: float, scoring: str = DEFAULT_SCORING
    ) -> Gallery:
        """A search-ready gallery of everything stored."""
        gallery = Gallery(dim, threshold=threshold, margin=margin, scoring=scoring)
        for person, rows in self.load().items():
            if rows.shape[1] != dim:
                raise TemplateStoreError(
                    f"{self.path}: {person} has {rows.shape[1]}-d templates, "
                    f"the model gives {dim}-d"
                )
            gallery.add(person, rows)
        return gallery

    def add(self, person: str, templates: np.ndarray) -> int:
        """Append templates to ``person`` and persist; returns the person's template count."""
        stored = self.load()
        rows = np.atleast_2d(np.asarray(templates, dtype=np.float32))
        stored[person] = rows if person not in stored else np.vstack([stored[person], rows])
        self.save(stored)
        return len(stored[person])

    def remove(self, person: str) -> bool:
        """Delete every template of ``person`` (erasure or opt-out); False when none existed."""
        stored = self.load()
        if stored.pop(person, None) is None:
            return False
        self.save(stored)
        log.info("face templates of one person removed")  # no id: journald is not erased
        return True

    def forget(self, person: str) -> bool:
        """Erasure request (issue 10): the same as ``remove``; named for the caller's intent."""
        return self.remove(person)
