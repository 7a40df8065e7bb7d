"""Secrets inside URLs, removed before a line is logged or a config is shown.

Camera URLs carry credentials in two ways: ``rtsp://user:pass@host/...`` (RFC 3986 userinfo) and
parameters such as ``?user=admin&password=...`` (many Hikvision/Dahua/XMEye firmwares, also in the
path: ``/user=admin&password=x&channel=1``).  Both become ``***``; the host, path and the other
parameters stay so the installer can still tell which camera a line is about.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
#: ``scheme://userinfo@``: everything between ``://`` and the first ``@`` before any ``/``.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
#: ``key=value`` after ``?``, ``&``, ``;`` or ``/`` where the key names a secret or an account.
_PARAM = re.compile(
    r"(?P<key>(?<=[?&;/])(?:password|passwd|pass|pwd|pw|user|username|usr|login|token"
    r"|access_token|auth|authorization|key|apikey|api_key|secret|signature|sig|credential"
    r"|credentials)=)[^&;\s#'\"]*",
    re.IGNORECASE,
)


def redact_urls(text: str) -> str:
    """``text`` with URL credentials replaced by ``***``.

    >>> redact_urls("rtsp://admin:12345@10.0.0.5:554/Streaming/Channels/101")
    'rtsp://***@10.0.0.5:554/Streaming/Channels/101'
    >>> redact_urls("rtsp://10.0.0.5/cam?user=admin&password=12345&channel=1")
    'rtsp://10.0.0.5/cam?user=***&password=***&channel=1'
    """
    if "=" not in text and "@" not in text:
        return text
    text = _USERINFO.sub(r"\g<scheme>" + MASK + "@", text)
    return _PARAM.sub(lambda m: m.group("key") + MASK, text)


class RedactUrls(logging.Filter):
    """A handler filter: every record's message and traceback text lose their URL secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_urls(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_urls(record.exc_text)
        return True
