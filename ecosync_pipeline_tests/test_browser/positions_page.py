"""What the store_sync_positions page shows, read as an operator reads it: loaded afresh
in headless Chromium (no click), its text scanned, each look kept as a screenshot with the
seconds since the event it follows.

The browser runs in UTC, so the page's times (the stories' and ``read_at``) compare with
the test's clock directly.
"""

from __future__ import annotations

import re
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ecosync_pipeline_tests.test_browser.ui import OUTPUT, UI_TIMEOUT_MS

SERIES = OUTPUT / "morning"
"""Every look of the operator's-morning test, one PNG each, named by phase and second."""
LOSS_UNDER_WAY = re.compile(r"(?<!last )loss (\d\d:\d\d:\d\d) UTC, [^\n]*? without a position")
STORY = re.compile(
    r"last loss (\d\d:\d\d:\d\d) UTC, [^\n]*?restored from [^\n]*? by run ([0-9a-f]{8}) in "
    r"[^\n]*? s\b"
)
READ_AT = re.compile(r"read_at\s.*?(\d{1,2}):(\d\d):(\d\d)\s*(AM|PM)?", re.DOTALL)
"""The table's read time as the UI renders a timestamp ('Dec 8, 2:15:03 AM UTC')."""


def seconds_of_day(hours: int, minutes: int, seconds: int, meridiem: str | None = None) -> int:
    """Seconds since midnight of a time of day, 12-hour clock or not."""
    if meridiem:
        hours = hours % 12 + (12 if meridiem == "PM" else 0)
    return hours * 3600 + minutes * 60 + seconds


def since(time_of_day: int, now: datetime) -> float:
    """Seconds from a time of day (UTC, seconds since midnight) to ``now``, across midnight."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return ((now - midnight).total_seconds() - time_of_day) % 86_400


@dataclass(frozen=True)
class Look:
    """One load of the page: when (monotonic and UTC), and what it showed."""

    at: float
    now: datetime
    text: str
    rows: tuple[str, ...] = ()

    @property
    def loss_under_way(self) -> str | None:
        """The time of the loss the page shows as under way ('02:15:03'), if any."""
        found = LOSS_UNDER_WAY.search(self.text)
        return found.group(1) if found else None

    @property
    def story(self) -> re.Match[str] | None:
        """The story of the last loss (its time, group 1; its run, group 2), if shown."""
        return STORY.search(self.text)

    def story_after(self, moment: datetime) -> bool:
        """The page tells the story of a loss seen at or after ``moment`` (UTC)."""
        story = self.story
        if story is None:
            return False
        hours, minutes, seconds = (int(x) for x in story.group(1).split(":"))
        told = seconds_of_day(hours, minutes, seconds)
        return since(told, self.now) <= (self.now - moment).total_seconds() + 1

    @property
    def read_seconds_ago(self) -> float | None:
        """How old the table's figures are: now minus the ``read_at`` the page states."""
        found = READ_AT.search(self.text)
        if found is None:
            return None
        hours, minutes, seconds = (int(found.group(i)) for i in (1, 2, 3))
        return since(seconds_of_day(hours, minutes, seconds, found.group(4)), self.now)

    def row(self, store: str) -> str:
        """The table's row of ``store`` ('' when not shown)."""
        return next((r for r in self.rows if r.split() and r.split()[0] == store), "")


@dataclass
class Series:
    """The screenshots of one test, each with the seconds since its phase began."""

    page: Any
    url: str
    looks: list[tuple[str, Look]] = field(default_factory=list)

    def __post_init__(self) -> None:
        shutil.rmtree(SERIES, ignore_errors=True)
        SERIES.mkdir(parents=True, exist_ok=True)

    def look(self, phase: str, began: float) -> Look:
        """Load the page afresh, read it, and keep its screenshot as ``phase+S.Ss.png``."""
        self.page.goto(self.url, timeout=UI_TIMEOUT_MS)
        self.page.get_by_text("Latest check results").first.wait_for(timeout=UI_TIMEOUT_MS)
        with suppress(Exception):
            # The metadata renders after the status line.
            self.page.get_by_text("last_loss").first.wait_for(timeout=10_000)
        seen = Look(
            time.monotonic(),
            datetime.now(timezone.utc),
            self.page.inner_text("body"),
            tuple(self.page.locator("tr").all_inner_texts()),
        )
        name = f"{phase}+{seen.at - began:05.1f}s.png"
        self.page.screenshot(path=str(SERIES / name), full_page=True)
        self.looks.append((name, seen))
        return seen

    def keep(self, name: str, destination: Path = OUTPUT) -> None:
        """Copy a screenshot of the series beside the figures under another name."""
        shutil.copy2(SERIES / self.looks[-1][0], destination / name)
