"""The EcoManager source: the HTTP client, the order model and the page locator."""

from __future__ import annotations

from typing import Protocol

from ecosync_pipeline.ecomanager.models import Order, Page


class PageFetcher(Protocol):
    """Anything that fetches one page of a store's orders (the client, or a fake in tests)."""

    def fetch_page(self, page: int, per_page: int | None = None) -> Page:
        """Fetch ``page`` (1-based) with ``per_page`` orders a page."""
        ...


__all__ = ["Order", "Page", "PageFetcher"]
