"""Gallery search semantics and the encrypted template store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vision.gallery import (
    DEFAULT_SCORING,
    NO_SCORE,
    SCORINGS,
    Gallery,
    TemplateStore,
    TemplateStoreError,
)

KEY = bytes(range(32))
DIM = 8


def unit(*values: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def person_score(rows: np.ndarray, probe: np.ndarray, scoring: str) -> float:
    """One person's score the obvious way, in float64."""
    rows, probe = rows.astype(np.float64), probe.astype(np.float64)
    if scoring == "max":
        return float(max(t @ probe for t in rows))
    if scoring == "mean":
        return float(np.mean([t @ probe for t in rows]))
    centroid = rows.sum(axis=0)
    return float(centroid @ probe / np.linalg.norm(centroid))


def loop_search(
    templates: dict[str, np.ndarray], probe: np.ndarray, scoring: str = "max"
) -> dict[str, float]:
    """The obvious per-person Python loop the matrix search must agree with."""
    return {person: person_score(rows, probe, scoring) for person, rows in templates.items()}


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
    scoring=st.sampled_from(SCORINGS),
)
def test_matrix_search_equals_per_person_loop(counts: list[int], seed: int, scoring: str) -> None:
    rng = np.random.default_rng(seed)
    gallery = Gallery(DIM, threshold=0.5, margin=0.05, scoring=scoring)
    templates = {}
    for i, n in enumerate(counts):
        rows = rng.normal(size=(n, DIM)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        templates[f"p{i}"] = rows
        gallery.add(f"p{i}", rows)
    probe = rng.normal(size=DIM).astype(np.float32)
    probe /= np.linalg.norm(probe)
    expected = loop_search(templates, probe, scoring)
    np.testing.assert_allclose(gallery.person_scores(probe), list(expected.values()), atol=1e-5)
    ranked = sorted(expected.items(), key=lambda kv: -kv[1])
    match = gallery.search(probe)
    assert match.best_person == ranked[0][0]
    assert match.score == pytest.approx(ranked[0][1], abs=1e-5)
    if len(ranked) > 1:
        assert match.second_person == ranked[1][0]
        assert match.second_score == pytest.approx(ranked[1][1], abs=1e-5)
    second = ranked[1][1] if len(ranked) > 1 else NO_SCORE
    accepted = ranked[0][1] >= 0.5 and ranked[0][1] - second >= 0.05
    assert (match.person is not None) == accepted


SCORE_TOLERANCE = 1e-5


def reference_top_two(
    templates: dict[str, np.ndarray], probe: np.ndarray, scoring: str
) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Per-person score in float64, and the persons ranked best first (stable: on a tie the
    person enrolled first ranks first)."""
    scores = loop_search(templates, probe, scoring)
    return scores, sorted(scores.items(), key=lambda kv: -kv[1])


@settings(max_examples=80, deadline=None)
@given(
    dim=st.sampled_from([8, 13, 128, 512]),
    counts=st.one_of(
        st.lists(st.just(1), min_size=1, max_size=16),
        st.lists(st.integers(1, 4), min_size=1, max_size=16),
    ),
    duplicate_first=st.booleans(),
    probe_near=st.one_of(st.none(), st.integers(0, 15)),
    seed=st.integers(0, 2**32 - 1),
    scoring=st.sampled_from(SCORINGS),
)
def test_fast_search_equals_reference(
    dim: int, counts: list[int], duplicate_first: bool, probe_near: int | None, seed: int,
    scoring: str,
) -> None:
    """Both search paths (one template per person, and several) against a plain reference:
    best person and score, second person and score, acceptance.  A duplicate of the first person
    (a re-enrolment under another id) makes exact ties; the probe is sometimes a noisy copy of a
    template, so that persons are accepted too."""
    rng = np.random.default_rng(seed)
    gallery = Gallery(dim, threshold=0.5, margin=0.05, scoring=scoring)
    templates: dict[str, np.ndarray] = {}
    for i, n in enumerate(counts):
        rows = rng.normal(size=(n, dim)).astype(np.float32)
        templates[f"p{i}"] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    if duplicate_first:
        templates["twin"] = templates["p0"].copy()
    for person, rows in templates.items():
        gallery.add(person, rows)
    all_rows = np.vstack(list(templates.values()))
    probe = rng.normal(size=dim).astype(np.float32)
    if probe_near is not None:
        probe = all_rows[probe_near % len(all_rows)] + 0.1 * probe / np.sqrt(dim)
    probe /= np.linalg.norm(probe)
    scores, ranked = reference_top_two(templates, probe, scoring)

    per_person = gallery.person_scores(probe)
    match = gallery.search(probe)
    np.testing.assert_allclose(per_person, list(scores.values()), atol=SCORE_TOLERANCE)
    assert match.best_person is not None
    assert match.score == pytest.approx(ranked[0][1], abs=SCORE_TOLERANCE)
    assert scores[match.best_person] == pytest.approx(ranked[0][1], abs=SCORE_TOLERANCE)
    best, second = ranked[0][1], ranked[1][1] if len(ranked) > 1 else NO_SCORE
    if best - second > SCORE_TOLERANCE:
        assert match.best_person == ranked[0][0]
    if len(ranked) == 1:
        assert (match.second_person, match.second_score) == (None, NO_SCORE)
    else:
        assert match.second_person is not None and match.second_person != match.best_person
        assert match.second_score == pytest.approx(second, abs=SCORE_TOLERANCE)
        assert scores[match.second_person] == pytest.approx(second, abs=SCORE_TOLERANCE)
    if duplicate_first and match.best_person in ("p0", "twin"):
        assert {match.best_person, match.second_person} == {"p0", "twin"}
        assert match.margin == pytest.approx(0.0, abs=SCORE_TOLERANCE) and match.person is None
    if min(abs(best - 0.5), abs(best - second - 0.05)) > SCORE_TOLERANCE:
        accepted = best >= 0.5 and best - second >= 0.05
        assert match.person == (match.best_person if accepted else None)
    np.testing.assert_allclose(gallery.person_scores(probe), per_person)


A, B = unit(1, 0), unit(0, 1)


@pytest.mark.parametrize(
    ("probe", "threshold", "margin", "person", "reason"),
    [
        (unit(1, 0.1), 0.6, 0.05, "alice", "clear winner"),
        (unit(1, 0.9), 0.6, 0.05, "alice", "close but still ahead by the margin"),
        (unit(1, 0.97), 0.6, 0.05, None, "look-alikes: lead under the margin"),
        (unit(1, 2), 0.6, 0.05, "bob", "bob's face"),
        (unit(1, 1.3, 3), 0.6, 0.05, None, "nobody above the threshold"),
        (unit(1, 0.97), 0.6, 0.0, "alice", "no margin required"),
    ],
)
def test_threshold_and_margin(
    probe: np.ndarray, threshold: float, margin: float, person: str | None, reason: str
) -> None:
    gallery = Gallery(DIM, threshold=threshold, margin=margin)
    gallery.add("alice", A)
    gallery.add("bob", B)
    assert gallery.search(probe).person == person, reason


def test_max_scoring_takes_the_best_template() -> None:
    gallery = Gallery(DIM, threshold=0.9, margin=0.05, scoring="max")
    gallery.add("alice", np.vstack([unit(1, 0), unit(0, 0, 1)]))
    gallery.add("bob", B)
    match = gallery.search(unit(0, 0, 1))
    assert (match.person, match.second_person) == ("alice", "bob")
    assert match.score == pytest.approx(1.0)


def test_empty_and_single_person_gallery() -> None:
    gallery = Gallery(DIM, threshold=0.5, margin=0.05)
    assert gallery.search(A).person is None and gallery.search(A).score == NO_SCORE
    gallery.add("alice", A)
    match = gallery.search(A)
    assert (match.person, match.second_person, match.second_score) == ("alice", None, NO_SCORE)


def test_add_remove_and_replace() -> None:
    gallery = Gallery(DIM, threshold=0.5, margin=0.05)
    gallery.add("alice", A)
    gallery.add("alice", unit(1, 0.2))
    gallery.add("bob", B)
    assert len(gallery) == 3 and gallery.persons() == ["alice", "bob"]
    assert gallery.remove("alice") and not gallery.remove("alice")
    assert "alice" not in gallery and gallery.search(A).person is None
    gallery.replace("bob", A)
    assert len(gallery.templates("bob")) == 1 and gallery.search(A).person == "bob"
    with pytest.raises(ValueError, match="non-zero"):
        gallery.add("carol", np.zeros(DIM))


def test_store_round_trip_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "templates.bin"
    store = TemplateStore(path, KEY, model="mobilefacenet_paddlex")
    assert store.load() == {}
    assert store.add("alice", np.vstack([A, unit(1, 0.1)])) == 2
    store.add("bob", B)  # one vector is one template
    reopened = TemplateStore(path, KEY, model="mobilefacenet_paddlex")
    gallery = reopened.load_gallery(DIM, threshold=0.5, margin=0.05)
    assert gallery.persons() == ["alice", "bob"] and len(gallery) == 3
    assert gallery.search(A).person == "alice"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert reopened.forget("alice") and not reopened.remove("alice")
    assert list(TemplateStore(path, KEY, model="mobilefacenet_paddlex").load()) == ["bob"]


def test_templates_are_not_stored_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "templates.bin"
    TemplateStore(path, KEY, model="arcface").add("alice-wang", A[None])
    blob = path.read_bytes()
    assert b"alice-wang" not in blob and A.tobytes() not in blob and b"arcface" not in blob


def test_wrong_key_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "templates.bin"
    TemplateStore(path, KEY, model="arcface").add("alice", A[None])
    before = path.read_bytes()
    wrong = TemplateStore(path, bytes(32), model="arcface")
    with pytest.raises(TemplateStoreError, match="cannot decrypt the face templates: wrong key"):
        wrong.load()
    with pytest.raises(TemplateStoreError, match="wrong key"):
        wrong.add("bob", B[None])
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "wrong key or damaged file"),
        (lambda b: b"PK\x03\x04" + b[4:], "not a menjin template store"),
        (lambda b: b[:10], "not a menjin template store"),
    ],
)
def test_damaged_store_is_refused(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "templates.bin"
    TemplateStore(path, KEY, model="arcface").add("alice", A[None])
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(TemplateStoreError, match=message):
        TemplateStore(path, KEY, model="arcface").load()


def test_templates_of_another_model_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "templates.bin"
    TemplateStore(path, KEY, model="arcface").add("alice", A[None])
    with pytest.raises(TemplateStoreError, match=r"made with model 'arcface'.*re-enrol"):
        TemplateStore(path, KEY, model="mobilefacenet_paddlex").load()
    with pytest.raises(TemplateStoreError, match="4-d templates, the model gives 8-d"):
        TemplateStore(path, KEY, model="arcface").save({"alice": np.ones((1, 4), np.float32)})
        TemplateStore(path, KEY, model="arcface").load_gallery(DIM, threshold=0.5, margin=0.05)


@pytest.mark.parametrize("key", [b"", b"short", bytes(16), bytes(33)])
def test_key_must_be_256_bits(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(TemplateStoreError, match="32 bytes"):
        TemplateStore(tmp_path / "t.bin", key, model="arcface")


def test_default_person_score_is_the_mean_of_all_templates() -> None:
    """Issue 23: one poor enrolment photo must not decide alone (the best template would)."""
    gallery = Gallery(DIM, threshold=0.8, margin=0.05)
    assert gallery.scoring == DEFAULT_SCORING == "mean"
    good, poor = unit(1, 0.2), unit(0.2, 1)
    gallery.add("alice", np.vstack([good, poor]))
    probe = unit(0.2, 1)  # resembles only the poor photo
    expected = (float(good @ probe) + float(poor @ probe)) / 2
    assert gallery.person_scores(probe)[0] == pytest.approx(expected, abs=1e-6)
    assert gallery.search(probe).person is None
    best_only = Gallery(DIM, threshold=0.8, margin=0.05, scoring="max")
    best_only.add("alice", np.vstack([good, poor]))
    assert best_only.search(probe).person == "alice"


def test_unknown_scoring_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="scoring must be one of mean, max, centroid, got 'best'"):
        Gallery(DIM, threshold=0.5, margin=0.05, scoring="best")
