"""Are a store's deliveries still arriving? Compared with what polling finds.

EcoManager disables a webhook after a day of failed retries and tells the shop by
email, which nobody may read: from then on, new orders reach the table only through
the scheduled sync. The sign is orders that the sync (not a delivery) brought in after
the store's last delivery, and long enough ago (``grace``) that their own delivery, if
any was coming, would have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.engine import Engine

from ecosync_pipeline.config import StoreId
from ecosync_pipeline.storage.orders import reading
from ecosync_pipeline.storage.schema import orders, webhook_inbox

NEVER_DELIVERED_WINDOW = timedelta(days=1)
DEFAULT_GRACE = timedelta(minutes=10)
"""Longer than a delivery's first retries (22 s, 2 min, 11 min after it): a delivery
this late is already in trouble."""


@dataclass(frozen=True)
class DeliveryHealth:
    """One store: its last delivery, and the orders polling found since without one."""

    store: str
    last_received_at: datetime | None
    polled_since: int
    """Orders first seen after the last delivery (in the last day when there is none) and
    before now - grace, none of them delivered: each one the webhooks should have brought."""

    @property
    def stopped(self) -> bool:
        return self.polled_since > 0

    def describe(self, now: datetime) -> str:
        if not self.stopped:
            return f"store {self.store}: webhook deliveries keep up with the orders polling finds"
        since = (
            f"since the last delivery at {self.last_received_at:%Y-%m-%d %H:%M:%S} UTC "
            f"({(now - self.last_received_at).total_seconds() / 60:.0f} min ago)"
            if self.last_received_at
            else "in the last day, and no delivery was received"
        )
        return (
            f"store {self.store}: polling found {self.polled_since} new orders {since}: "
            "EcoManager has probably disabled the webhooks after failed retries. Check that "
            "the receiver is reachable, then run `ecosync webhooks register` for this store "
            "again (it re-activates them); the sync keeps the table complete meanwhile."
        )


def delivery_health(
    engine: Engine, store: StoreId, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> DeliveryHealth:
    """The store's last delivery and the orders first seen after it without a delivery."""
    i, o = webhook_inbox.c, orders.c
    with reading(engine, f"store {store}: comparing deliveries with polled orders") as conn:
        last = conn.execute(select(func.max(i.received_at)).where(i.store == store)).scalar()
        delivered = exists().where(i.store == o.store, i.order_id == o.order_id)
        polled = select(func.count()).where(
            o.store == store, o.first_seen_at < now - grace, ~delivered
        )
        # Never delivered (or purged): the last day, not the store's whole history.
        polled = polled.where(o.first_seen_at > (last or now - NEVER_DELIVERED_WINDOW))
        count = int(conn.execute(polled).scalar_one())
    return DeliveryHealth(store=store, last_received_at=last, polled_since=count)
