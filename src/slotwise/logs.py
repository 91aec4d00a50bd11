"""Secrets never reach the logs: invitation tokens travel in URL paths, so access logs redact them.

API tokens travel in the Authorization header and passwords in request bodies, neither of which is
logged; only the path needs care.
"""

from __future__ import annotations

import logging
import re

_TOKEN_IN_PATH = re.compile(r"(/invitations/)[^/?\s]+")


class RedactInvitationTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_PATH.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_PATH.sub(r"\1[redacted]", record.msg)
        return True


def install_redaction() -> None:
    """Attach the filter once to the access loggers of the servers slotwise runs under."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactInvitationTokens) for f in logger.filters):
            logger.addFilter(RedactInvitationTokens())
