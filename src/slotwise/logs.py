"""Secrets never reach the logs: invitation tokens travel in URL paths, so access logs redact them.

API tokens travel in the Authorization header and passwords in request bodies, neither of which is
logged; only the path needs care.
"""

from __future__ import annotations

import logging
import re

_TOKEN_IN_PATH = re.compile(r"(/invitations/)[^/?\s]+")


def _redact(value: object) -> object:
    # The substring test first: every access log line passes here, and almost none has a token.
    if isinstance(value, str) and "/invitations/" in value:
        return _TOKEN_IN_PATH.sub(r"\1[redacted]", value)
    return value


class RedactInvitationTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        record.msg = _redact(record.msg)
        return True


def install_redaction() -> None:
    """Attach the filter once to the access loggers of the servers slotwise runs under."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactInvitationTokens) for f in logger.filters):
            logger.addFilter(RedactInvitationTokens())
