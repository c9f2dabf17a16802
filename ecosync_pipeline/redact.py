"""Blanking secrets out of text that came, even in part, from outside.

A server or proxy may echo the Authorization header back in a body, a redirect, a
``Retry-After`` value or an HTML error page, and messages are often cut short, so
replacing only the whole token is not enough: a cut-off echo still leaks most of it.
A ``Redactor`` blanks every run of ``MIN_RUN`` or more consecutive characters of any
secret (case-insensitively), wherever it starts and however the text was cut.

An HTTP client's own request log prints each URL, query string included: a cursor there
is base64 that a server may fill with anything. ``quiet_request_log`` makes those URLs
pass ``loggable_url`` (no user info, no query value but plain numbers and sort words).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

MIN_RUN = 8
"""The shortest run of a secret's characters that is blanked; shorter runs are noise."""

MASK = "[redacted]"


def url_secrets(url: str) -> list[str]:
    """The password in a URL's user info, raw and percent-decoded (none: an empty list)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


class Redactor:
    """Blanks every ``MIN_RUN``-character run of any of its secrets out of a text.

    A secret shorter than ``MIN_RUN`` (a short password) is blanked wherever it
    appears whole.
    """

    def __init__(self, secrets: Iterable[str], *, min_run: int = MIN_RUN) -> None:
        if min_run < 1:
            raise ValueError(f"min_run must be at least 1, got {min_run}")
        pieces: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            low = secret.lower()
            if len(low) <= min_run:
                pieces.add(low)
                continue
            pieces.update(low[i : i + min_run] for i in range(len(low) - min_run + 1))
        self._min_run = min_run
        # Longest first, so a short whole secret never hides a longer match at the same place.
        alternatives = "|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True))
        # A lookahead finds every (overlapping) start; the runs found are then merged.
        self._pattern = re.compile(f"(?=({alternatives}))", re.IGNORECASE) if pieces else None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The merged (start, end) spans of ``text`` made of a secret's characters."""
        if self._pattern is None:
            return []
        merged: list[tuple[int, int]] = []
        for match in self._pattern.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def __call__(self, text: str) -> str:
        """``text`` with every run of a secret replaced by ``[redacted]``."""
        spans = self.spans(text)
        if not spans:
            return text
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts += [text[last:start], MASK]
            last = end
        parts.append(text[last:])
        return "".join(parts)


PLAIN_QUERY_VALUE = re.compile(r"^(?:[0-9]{1,12}|asc|desc|-?id)$")
"""Query values the contract's requests carry that hold nothing secret: page numbers,
sizes, sort words. Every other value (a cursor, which is base64 a server may fill with
anything, the token's context included) is blanked in a request log."""


def loggable_url(url: str) -> str:
    """``url`` without user info and with every query value but plain ones blanked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc.rpartition("@")[2]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(
        f"{name}={value if PLAIN_QUERY_VALUE.match(value) else MASK}" for name, value in pairs
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class RequestLogFilter(logging.Filter):
    """Passes an HTTP client's request log records with their URLs made loggable.

    httpx logs every request at INFO as ``HTTP Request: GET <url> "HTTP/1.1 200 OK"``,
    the query string verbatim; this rewrites the URL argument (loggable_url).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(loggable_url(str(a)) if "://" in str(a) else a for a in record.args)
        return True


def quiet_request_log(logger_name: str = "httpx") -> None:
    """Install RequestLogFilter on the HTTP client's logger, once per process."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, RequestLogFilter) for f in target.filters):
        target.addFilter(RequestLogFilter())
