"""Tracker: one face passing is one track, whatever its speed, crossings and dropped frames."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vision.detect import Face
from vision.track import Tracker, iou

FPS = 15.0


def face(x: float, y: float, size: float = 100.0) -> Face:
    box = np.array([x, y, x + size, y + size], dtype=np.float32)
    kps = np.tile(np.array([x + size / 2, y + size / 2], dtype=np.float32), (5, 1))
    return Face(box, kps, 0.9)


def run(tracker: Tracker, frames: list[list[Face]]) -> tuple[set[int], list[int]]:
    """Feed frames; the ids seen and the ids of tracks that ended (in order)."""
    seen: set[int] = set()
    ended: list[int] = []
    for i, faces in enumerate(frames):
        assigned, gone = tracker.update(faces, i / FPS)
        seen.update(track.id for track, _ in assigned)
        ended.extend(track.id for track in gone)
    ended.extend(track.id for track in tracker.close_all())
    return seen, ended


def test_iou_table() -> None:
    a = np.array([0, 0, 10, 10], dtype=np.float32)
    cases = [
        (np.array([0, 0, 10, 10], dtype=np.float32), 1.0),
        (np.array([5, 0, 15, 10], dtype=np.float32), 50 / 150),
        (np.array([20, 20, 30, 30], dtype=np.float32), 0.0),
    ]
    for b, expected in cases:
        assert abs(iou(a, b) - expected) < 1e-6


def test_one_face_walking_across_is_one_track() -> None:
    frames = [[face(-50 + 20 * i, 100)] for i in range(40)]
    seen, ended = run(Tracker(), frames)
    assert seen == {1}
    assert ended == [1]


def test_dropped_frames_still_continue_the_track() -> None:
    # Every third frame only: the face jumps 60 px (boxes of 100 px barely overlap).
    frames = [[face(20 * i, 100)] if i % 3 == 0 else [] for i in range(30)]
    seen, _ = run(Tracker(timeout_seconds=1.0), frames)
    assert seen == {1}


def test_a_face_detected_every_fifth_frame_continues_its_track_where_it_was_heading() -> None:
    # 40 px a frame: after five frames the face is 200 px on, two box widths, far past the jump
    # limit of its last box; the track's velocity says where to look.
    frames = [[face(40 * i, 100)] if i < 3 or i % 5 == 0 else [] for i in range(16)]
    seen, ended = run(Tracker(), frames)
    assert seen == {1}
    assert ended == [1]


def test_a_track_learns_the_pace_of_its_face() -> None:
    tracker = Tracker()
    tracker.update([face(0, 100)], 0.0)
    assigned, _ = tracker.update([face(20, 100)], 0.1)
    ((track, _seen),) = assigned
    assert track.velocity.tolist() == [200.0, 0.0, 200.0, 0.0]
    assert track.expected_box(0.2).tolist() == [40.0, 100.0, 140.0, 200.0]
    tracker.update([face(30, 100)], 0.2)  # slowed down: smoothed, not replaced
    assert track.velocity.tolist() == [150.0, 0.0, 150.0, 0.0]


def test_two_faces_side_by_side_keep_their_own_tracks() -> None:
    frames = [[face(50 + 5 * i, 100), face(400 - 5 * i, 100)] for i in range(20)]
    tracker = Tracker()
    first, _ = tracker.update(frames[0], 0.0)
    ids_by_side = {int(f.box[0]): t.id for t, f in first}
    for i, faces in enumerate(frames[1:], start=1):
        assigned, _ = tracker.update(faces, i / FPS)
        for track, f in assigned:
            side = 50 if f.box[0] < 225 else 400
            assert track.id == ids_by_side[side]
    assert len(tracker.tracks) == 2


def test_a_face_gone_longer_than_the_timeout_ends_its_track_and_returns_as_a_new_one() -> None:
    tracker = Tracker(timeout_seconds=0.5)
    tracker.update([face(100, 100)], 0.0)
    assigned, ended = tracker.update([face(100, 100)], 2.0)
    assert [t.id for t in ended] == [1]
    assert [t.id for t, _ in assigned] == [2]


def test_a_far_away_face_opens_a_second_track() -> None:
    tracker = Tracker()
    tracker.update([face(0, 0)], 0.0)
    assigned, _ = tracker.update([face(0, 0), face(500, 300)], 0.1)
    assert sorted(t.id for t, _ in assigned) == [1, 2]


def test_expire_without_faces_counts_frames_of_the_track() -> None:
    tracker = Tracker(timeout_seconds=0.2)
    for i in range(5):
        tracker.update([face(10 * i, 0)], i / FPS)
    ended = tracker.expire(5.0)
    assert [(t.id, t.frames) for t in ended] == [(1, 5)]


@settings(max_examples=60, deadline=None)
@given(
    lanes=st.lists(
        st.tuples(st.floats(2, 30), st.integers(5, 40)),  # speed px/frame, frames visible
        min_size=1, max_size=3,
    ),
    gap=st.integers(0, 10),
)
def test_every_passage_on_its_own_lane_is_exactly_one_track(
    lanes: list[tuple[float, int]], gap: int
) -> None:
    """People on separate lanes (rows 150 px apart), any speed below the jump limit, entering at
    staggered times: as many tracks as people, none split."""
    frames: list[list[Face]] = []
    total = max(gap * lane + count for lane, (_, count) in enumerate(lanes)) + 1
    for i in range(total):
        faces = []
        for lane, (speed, count) in enumerate(lanes):
            start = gap * lane
            if start <= i < start + count:
                faces.append(face(speed * (i - start), 150.0 * lane, size=100))
        frames.append(faces)
    seen, ended = run(Tracker(), frames)
    assert len(seen) == len(lanes)
    assert sorted(ended) == sorted(seen)
