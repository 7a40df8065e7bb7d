"""URL credentials never reach a log line, whichever module logs them."""

from __future__ import annotations

import io
import logging

import pytest

from daemon import logsetup
from daemon.redact import redact_urls


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("rtsp://admin:Hik12345@10.0.0.5:554/Streaming/Channels/101",
         "rtsp://***@10.0.0.5:554/Streaming/Channels/101"),
        ("rtsp://10.0.0.6:554/cam/realmonitor?channel=1&subtype=0&user=admin&password=dahua1",
         "rtsp://10.0.0.6:554/cam/realmonitor?channel=1&subtype=0&user=***&password=***"),
        ("rtsp://10.0.0.7/user=admin&password=xm123&channel=1&stream=0.sdp",
         "rtsp://10.0.0.7/user=***&password=***&channel=1&stream=0.sdp"),
        ("http://cam.local/snap.jpg?token=abc.def&size=2",
         "http://cam.local/snap.jpg?token=***&size=2"),
        ("rtsp://10.0.0.8:554/live", "rtsp://10.0.0.8:554/live"),
        ("camera front: rtsp://u:p@h/x failed (timeout)",
         "camera front: rtsp://***@h/x failed (timeout)"),
    ],
)
def test_redact_urls(url: str, safe: str) -> None:
    assert redact_urls(url) == safe


def test_every_log_line_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logsetup.configure("INFO")
    log = logging.getLogger("drivers.camera")  # a library module, not the daemon's
    log.warning("cannot open %s", "rtsp://10.0.0.6/cam?user=admin&password=secret9")
    try:
        raise OSError("rtsp://admin:secret9@10.0.0.5/live refused")
    except OSError:
        log.exception("camera failed")
    text = stream.getvalue()
    assert "secret9" not in text and "admin" not in text
    assert "password=***" in text and "rtsp://***@10.0.0.5/live" in text
