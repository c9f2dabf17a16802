"""Blanking secrets out of text that came, even in part, from outside.

A server or proxy may echo the Authorization header back in a body, a redirect, a
``Retry-After`` value or an HTML error page, and messages are often cut short, so
replacing only the whole token is not enough: a cut-off echo still leaks most of it.
A ``Redactor`` blanks every run of ``MIN_RUN`` or more consecutive characters of any
secret (case-insensitively), wherever it starts and however the text was cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

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
