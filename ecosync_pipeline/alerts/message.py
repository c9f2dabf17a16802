"""One alert: which stores, what happened and the fix, as a Slack text and an e-mail.

Four things are told without anyone looking (docs/operations.md, "Alerts"):

    kind              sent when
    recovery_failed   a recovery of the sync positions fails (once per run)
    loss_not_mended   positions lost are still not restored after the grace (5 minutes)
    store_failing     a store's sync fails in the third run in a row (not the fourth)
    check_error       an asset check's result turns ERROR (once, until it passes again)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

AlertKind = Literal["recovery_failed", "loss_not_mended", "store_failing", "check_error"]
STORES_SHOWN = 20
"""Stores named in one message; the rest are counted ("and 180 more")."""
LINES_SHOWN = 10
"""Detail lines in one message (one per store or per failure); the rest are counted."""
MAX_LINE = 600
"""A detail line longer than this is cut: a message is read on a phone."""


def store_list(stores: Sequence[str]) -> str:
    """The stores named, at most STORES_SHOWN of them: 'NATUR, PURNA and 3 more'."""
    if not stores:
        return "none named"
    shown = ", ".join(stores[:STORES_SHOWN])
    rest = len(stores) - STORES_SHOWN
    return f"{shown} and {rest} more" if rest > 0 else shown


def clip(text: str, limit: int = MAX_LINE) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[: limit - 3]}..."


@dataclass(frozen=True)
class Alert:
    """One message: the stores concerned, what happened (one line each) and the fix."""

    kind: AlertKind
    title: str
    stores: tuple[str, ...]
    happened: tuple[str, ...]
    fix: str
    link: str | None = None
    """The Dagster UI page to open (a run, an asset's checks), when its address is known."""
    key: str = field(default="", compare=False)
    """What makes this alert this one (for logs): the run id, the check, the stores."""

    def text(self) -> str:
        """The message as plain text (Slack renders it as is, e-mail sends it as the body)."""
        lines = [self.title, f"Stores: {store_list(self.stores)}", "What happened:"]
        lines += [f"- {clip(line)}" for line in self.happened[:LINES_SHOWN]]
        if len(self.happened) > LINES_SHOWN:
            lines.append(f"- and {len(self.happened) - LINES_SHOWN} more")
        lines.append(f"Fix: {self.fix}")
        if self.link:
            lines.append(f"Open: {self.link}")
        return "\n".join(lines)

    def subject(self) -> str:
        """The e-mail subject: the title on one line."""
        return clip(self.title, 200)
