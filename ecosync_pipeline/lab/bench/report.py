"""Small statistics shared by the benchmark reports (tables: ecosync_pipeline.tables)."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ecosync_pipeline.tables import format_table

__all__ = ["Spread", "format_table", "machine"]


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of repeated measurements."""

    median: float
    minimum: float
    maximum: float
    samples: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of ``values`` (at least one)."""
        if not values:
            raise ValueError("no measurements")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready."""
        return {
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "samples": self.samples,
        }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
