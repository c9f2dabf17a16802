"""Are a store's deliveries still arriving? Compared with what polling finds.

EcoManager disables a webhook after a day of failed retries and tells the shop by
email, which nobody may read: from then on, new orders reach the table only through
the scheduled sync. The sign is orders that the sync (not a delivery) brought in after
the store's last delivery, and long enough ago (``grace``) that their own delivery, if
any was coming, would have arrived.

Deliveries kept ``refused`` (authentic, answered 200, but not an order the table can
hold) are counted too: each is an order only the poll will bring.
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
REFUSED_WINDOW = timedelta(days=1)
"""Refused deliveries are reported for a day after they arrived."""
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
    refused: int = 0
    """Authentic deliveries of the last day kept refused (not an order the table can hold)."""

    @property
    def stopped(self) -> bool:
        return self.polled_since > 0

    @property
    def ok(self) -> bool:
        """Deliveries keep up, and none of the last day was refused."""
        return not self.stopped and self.refused == 0

    def describe(self, now: datetime) -> str:
        refused = (
            f" {self.refused} authentic deliveries of the last day could not be applied and "
            "were kept refused (see webhook_inbox.reason); their orders are left to the sync."
            if self.refused
            else ""
        )
        if not self.stopped:
            keeping = (
                f"store {self.store}: webhook deliveries keep up with the orders polling finds"
            )
            return keeping + ("; but" + refused if refused else "")
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
            "again (it re-activates them); the sync keeps the table complete meanwhile." + refused
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
        refused = select(func.count()).where(
            i.store == store, i.outcome == "refused", i.received_at > now - REFUSED_WINDOW
        )
        kept = int(conn.execute(refused).scalar_one())
    return DeliveryHealth(store=store, last_received_at=last, polled_since=count, refused=kept)
