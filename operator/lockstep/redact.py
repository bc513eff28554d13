"""Keeping secrets out of status, Events, logs and exception text.

Two layers: connection URLs are masked by pattern wherever they appear, and every secret value
the process has read (registered with `remember`) is replaced wherever it appears verbatim.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `lockstep lint` runs without logging
    import logging

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host ; also key=value conninfo passwords
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@]*)(?=@)", re.I
)
_CONNINFO_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'[^']*'|\S+)", re.I)

_known: set[str] = set()
_lock = threading.Lock()


def remember(secret: str | None) -> None:
    """Register a secret value so that `redact` masks it wherever it shows up."""
    if secret and len(secret) >= 4:
        with _lock:
            _known.add(secret)


def redact(text: str) -> str:
    """Mask URL passwords, conninfo passwords and every remembered secret in `text`."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _CONNINFO_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter:
    """A logging filter that redacts each record's final message (and its exception text).

    (A handler takes any object with a `filter` method.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            import logging

            formatted = logging.Formatter().formatException(record.exc_info)
            message = f"{message}\n{formatted}"
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message)
        record.args = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (the root logger by default)."""
    import logging

    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
