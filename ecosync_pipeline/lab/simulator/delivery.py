"""Webhook delivery as EcoManager does it: signed POSTs, retried on a growing schedule.

A delivery that is not answered 2xx within ``timeout`` seconds is retried up to
``retries`` times, the k-th retry ``first_interval * factor**(k-1)`` seconds after the
previous attempt (22 s, 110 s, 550 s, ... : the sixth about 24 hours after the first
attempt). After the last failure the webhook is disabled and the shop "is told by
email" (a notice). ``time_scale`` shrinks every interval, so a test or a benchmark
can play a day of retries in seconds.

Switches (rates in [0, 1], drawn from a seeded generator) make a share of first
deliveries misbehave the way a real network and a real EcoManager may: ``drop_rate``
(never sent), ``duplicate_rate`` (sent twice), ``reorder_rate`` (held back up to
``reorder_window`` seconds, so later events overtake it) and ``delay_rate`` (sent
``delay_seconds`` late).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import httpx

from ecosync_pipeline.lab.simulator.spec import SimulatorError
from ecosync_pipeline.webhooks.signature import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    SOURCE_HEADER,
    WEBHOOK_ID_HEADER,
    sign,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry schedule and misbehaviour switches of the simulator's webhook delivery."""

    retries: int = 6
    first_interval: float = 22.0
    factor: float = 5.0
    time_scale: float = 1.0
    timeout: float = 5.0
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    reorder_window: float = 1.0
    delay_rate: float = 0.0
    delay_seconds: float = 3.0

    def interval(self, retry: int) -> float:
        """Seconds between attempt ``retry`` (1-based) and the attempt before it."""
        return self.first_interval * self.factor ** (retry - 1) * self.time_scale

    def updated(self, **switches: Any) -> DeliveryPolicy:
        """A copy with some fields changed; unknown names and bad values raise."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(switches) - names)
        if unknown:
            raise SimulatorError(
                f"unknown delivery switch {', '.join(unknown)}; use {', '.join(sorted(names))}"
            )
        for name, value in switches.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise SimulatorError(f"delivery switch {name} must be a number >= 0, got {value!r}")
            if name.endswith("_rate") and value > 1:
                raise SimulatorError(f"delivery switch {name} must be a rate in [0, 1]")
        new = replace(self, **switches)
        if not isinstance(new.retries, int) or new.timeout <= 0:
            raise SimulatorError("retries must be a whole number and timeout more than 0")
        return new

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Delivery:
    """One event for one webhook: what is POSTed, to where, and its attempt number."""

    store: str
    webhook_id: int
    event: str
    order_id: int
    body: bytes
    url: str
    secret: str
    source: str
    headers: tuple[tuple[str, str], ...] = ()
    created_at: float = 0.0
    """When the change happened in the simulator (time.time())."""
    attempt: int = 0


@dataclass(frozen=True)
class Attempt:
    """One POST as it went: the delivery, when, and the status (None: no answer)."""

    delivery: Delivery
    sent_at: float
    status: int | None


class Dispatcher:
    """A due-time queue of deliveries, sent by a small thread pool, retried per the policy.

    ``on_exhausted(delivery)`` is called when a delivery failed its last retry (the hub
    disables the webhook). Threads start with the first delivery.
    """

    def __init__(self, on_exhausted: Callable[[Delivery], None], seed: int = 0) -> None:
        self.policy = DeliveryPolicy()
        self._on_exhausted = on_exhausted
        self._rng = random.Random(seed ^ 0x5EB400C)
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None
        self._stopping = False
        self.counts: Counter[str] = Counter()
        self.attempts: deque[Attempt] = deque(maxlen=200_000)

    def submit(self, delivery: Delivery) -> None:
        """Queue a first delivery, applying the drop/duplicate/reorder/delay switches."""
        p, rng = self.policy, self._rng
        with self._cond:
            self.counts["events"] += 1
            if p.drop_rate and rng.random() < p.drop_rate:
                self.counts["dropped"] += 1
                return
            due = time.monotonic()
            if p.delay_rate and rng.random() < p.delay_rate:
                self.counts["delayed"] += 1
                due += p.delay_seconds
            if p.reorder_rate and rng.random() < p.reorder_rate:
                self.counts["reordered"] += 1
                due += rng.uniform(0.0, p.reorder_window)
            copies = 1
            if p.duplicate_rate and rng.random() < p.duplicate_rate:
                self.counts["duplicated"] += 1
                copies = 2
            for _ in range(copies):
                self._push(due, delivery)
        self._ensure_running()

    def _push(self, due: float, delivery: Delivery) -> None:
        heapq.heappush(self._queue, (due, next(self._seq), delivery))
        self._cond.notify_all()

    def _ensure_running(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._http = httpx.Client(timeout=self.policy.timeout, follow_redirects=False)
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sim-webhook")
            self._thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout=wait)
                if self._stopping:
                    return
                _, _, delivery = heapq.heappop(self._queue)
                self._in_flight += 1
                pool = self._pool
            assert pool is not None
            pool.submit(self._send, delivery)

    def _send(self, delivery: Delivery) -> None:
        status: int | None = None
        try:
            status = self._post(delivery)
        finally:
            with self._cond:
                self.attempts.append(Attempt(delivery, time.time(), status))
                self._in_flight -= 1
                self._after(delivery, status)
                self._cond.notify_all()

    def _post(self, delivery: Delivery) -> int | None:
        http = self._http
        assert http is not None
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(delivery.secret, delivery.body),
            SOURCE_HEADER: delivery.source,
            EVENT_HEADER: delivery.event,
            WEBHOOK_ID_HEADER: str(delivery.webhook_id),
            **dict(delivery.headers),
        }
        try:
            return http.post(delivery.url, content=delivery.body, headers=headers).status_code
        except httpx.HTTPError as exc:
            logger.debug(
                "webhook %d: no answer from %s (%s)", delivery.webhook_id, delivery.url, exc
            )
            return None

    def _after(self, delivery: Delivery, status: int | None) -> None:
        """Count the attempt and schedule the retry (called under the condition)."""
        if status is not None and 200 <= status < 300:
            self.counts["delivered"] += 1
            return
        self.counts["failed_attempts"] += 1
        retry = delivery.attempt + 1
        if retry > self.policy.retries:
            self.counts["exhausted"] += 1
            self._on_exhausted(delivery)
            return
        due = time.monotonic() + self.policy.interval(retry)
        self._push(due, replace(delivery, attempt=retry))

    def pending(self) -> int:
        """Deliveries queued or being sent."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(timeout=min(remaining, 0.05))
        return True

    def clear(self) -> None:
        """Back to the default policy; forget queued deliveries, counts and attempts."""
        with self._cond:
            self.policy = DeliveryPolicy()
            self._queue.clear()
            self.counts.clear()
            self.attempts.clear()

    def stop(self) -> None:
        """Stop the threads; queued deliveries are dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, pool, http = self._thread, self._pool, self._http
            self._thread = self._pool = self._http = None
        if thread is not None:
            thread.join(timeout=5)
        if pool is not None:
            pool.shutdown(wait=True)
        if http is not None:
            http.close()
