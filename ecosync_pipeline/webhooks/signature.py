"""EcoManager's webhook signature: hex HMAC-SHA256 of the raw request body.

The signature covers the bytes as sent. Parsing the JSON and serializing it again (as
the original system did) changes whitespace, key order or escapes, and with them the
digest: a receiver must verify the raw bytes before it parses anything.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Ecomanager-Signature"
SOURCE_HEADER = "X-Ecomanager-Source"
EVENT_HEADER = "X-Ecomanager-Event"
WEBHOOK_ID_HEADER = "X-Ecomanager-Webhook-ID"


def signer(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 with ``secret`` to feed a body chunk by chunk (``update``)."""
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` with ``secret``, as EcoManager sends it."""
    mac = signer(secret)
    mac.update(body)
    return mac.hexdigest()


def matches(mac: hmac.HMAC, signature: str | None) -> bool:
    """Whether ``signature`` is ``mac``'s digest, compared in constant time.

    A missing or non-hex header is simply invalid; upper-case hex is accepted.
    """
    if not signature:
        return False
    expected = mac.hexdigest().encode("ascii")
    return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the signature of exactly ``body``, compared in constant time."""
    mac = signer(secret)
    mac.update(body)
    return matches(mac, signature)
