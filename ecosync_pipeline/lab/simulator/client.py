"""SimulatorClient: drive a simulator running in another process through /_sim.

The methods mirror Simulator's control API, so a demo or a benchmark reads the same
whether the simulator is in-process or behind ``ecosync simulator serve``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from ecosync_pipeline.closing import Closing
from ecosync_pipeline.lab.simulator.spec import SimulatorError, UnknownStore

DEFAULT_URL = "http://127.0.0.1:8765"


class SimulatorClient(Closing):
    """HTTP client for a simulator's control endpoints."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SimulatorError(
                f"simulator at {self.url} did not answer {method} {path} ({exc}); start it "
                "with `ecosync simulator serve` or pass --url"
            ) from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            error = UnknownStore if response.status_code == 404 else SimulatorError
            raise error(f"simulator at {self.url}: {method} {path}: {message}")
        return response.json()

    def stores(self) -> list[dict[str, Any]]:
        """Every simulated store, described (count, first/last id, switches, counts)."""
        return list(self._call("GET", "/_sim/stores")["stores"])

    def describe(self, store: str) -> dict[str, Any]:
        """One store's summary (as Simulator.describe)."""
        return dict(self._call("GET", f"/_sim/{store}/stats"))

    def stats(self, store: str) -> dict[str, int]:
        """Orders requests by outcome, plus 'total'."""
        return dict(self.describe(store)["requests"])

    def count(self, store: str) -> int:
        """How many orders the store serves now."""
        return int(self.describe(store)["count"])

    def last_id(self, store: str) -> int | None:
        """The highest id served now."""
        value = self.describe(store)["last_id"]
        return None if value is None else int(value)

    def add_orders(self, store: str, count: int = 1) -> list[int]:
        """Append ``count`` new orders; return their ids."""
        return list(self._call("POST", f"/_sim/{store}/orders", json={"count": count})["ids"])

    def delete_orders(self, store: str, ids: Iterable[int]) -> list[int]:
        """Delete these ids; return those deleted."""
        return list(self._call("POST", f"/_sim/{store}/delete", json={"ids": list(ids)})["deleted"])

    def delete_random(
        self, store: str, n: int, *, min_id: int | None = None, max_id: int | None = None
    ) -> list[int]:
        """Delete ``n`` random orders; return their ids."""
        body = {"random": n, "min_id": min_id, "max_id": max_id}
        return list(self._call("POST", f"/_sim/{store}/delete", json=body)["deleted"])

    def set_status(
        self, store: str, order_id: int, status: str, confirmation: str | None = None
    ) -> None:
        """Change an order's state."""
        self._call(
            "POST",
            f"/_sim/{store}/status",
            json={"id": order_id, "status": status, "confirmation": confirmation},
        )

    def change_random_statuses(self, store: str, n: int) -> list[int]:
        """Move ``n`` random orders to their next state; return their ids."""
        return list(self._call("POST", f"/_sim/{store}/status", json={"random": n})["changed"])

    def advance_statuses(self, store: str, n: int) -> list[int]:
        """Move ``n`` random open orders one state along the flow; return their ids."""
        return list(self._call("POST", f"/_sim/{store}/status", json={"advance": n})["changed"])

    def swap_orders(self, store: str, n: int) -> tuple[list[int], list[int]]:
        """Delete ``n`` random orders and add as many at one instant: (deleted, added)."""
        body = self._call("POST", f"/_sim/{store}/swap", json={"count": n})
        return list(body["deleted"]), list(body["added"])

    def set_faults(self, store: str | None, **switches: Any) -> dict[str, Any]:
        """Change fault switches of one store (or every store with None)."""
        if store is None:
            self._call("POST", "/_sim/faults", json=switches)
            return switches
        return dict(self._call("POST", f"/_sim/{store}/faults", json=switches)["faults"])

    def clear_faults(self, store: str) -> None:
        """Back to a well-behaved server for this store."""
        self._call("DELETE", f"/_sim/{store}/faults")

    def fail_next(self, store: str, n: int, kind: str) -> None:
        """Make the next ``n`` orders requests fail with ``kind``."""
        self._call("POST", f"/_sim/{store}/fail-next", json={"count": n, "kind": kind})

    def reset_counts(self, store: str) -> None:
        """Forget the store's request counts."""
        self._call("POST", f"/_sim/{store}/reset-counts")

    def reset(self) -> None:
        """Every store back to its initial state."""
        self._call("POST", "/_sim/reset")

    def page_of(self, store: str, order_id: int, per_page: int = 20) -> int | None:
        """The page holding ``order_id`` now, or None."""
        page = self._call(
            "GET", f"/_sim/{store}/page-of", params={"id": order_id, "per_page": per_page}
        )["page"]
        return None if page is None else int(page)

    def ids(self, store: str) -> Iterator[int]:
        """Every id served now, ascending, streamed."""
        try:
            with self._http.stream("GET", f"/_sim/{store}/ids") as response:
                if response.status_code >= 400:
                    response.read()
                    error = UnknownStore if response.status_code == 404 else SimulatorError
                    raise error(f"simulator at {self.url}: ids of {store}: {response.text}")
                for line in response.iter_lines():
                    if line:
                        yield int(line)
        except httpx.HTTPError as exc:
            raise SimulatorError(f"simulator at {self.url}: ids of {store} failed ({exc})") from exc

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()
