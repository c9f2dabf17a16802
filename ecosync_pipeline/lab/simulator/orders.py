"""The content of a simulated order, computed from (store key, order id) alone.

Customers are Algerian (wilayas and their communes, 05/06/07 mobile numbers), items
come from a small catalogue per kind of shop, prices are in dinars, and the status
follows the order's age: recent orders are still in dispatch or on their way, old
ones are delivered, returned or cancelled. ``created_at`` and ``updated_at`` both
increase strictly with the id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ecosync_pipeline.lab.simulator.idspace import GOLDEN, M64, mix64

ORDER_STATES = ("En dispatch", "Confirmé", "En cours", "Expédié", "Livré", "Annulé", "Retourné")
CONFIRMATION_STATES = ("En attente", "Confirmé", "Injoignable", "Reporté", "Annulé", "Double")

# The next state an order moves to when its status changes while the sync runs.
NEXT_STATE = {
    "En dispatch": "Confirmé",
    "Confirmé": "En cours",
    "En cours": "Expédié",
    "Expédié": "Livré",
    "Livré": "Retourné",
    "Retourné": "Livré",
    "Annulé": "Confirmé",
}

# (wilaya code, wilaya, delivery fee in DZD, weight, communes)
WILAYAS: tuple[tuple[int, str, int, int, tuple[str, ...]], ...] = (
    (1, "Adrar", 1000, 1, ("Adrar", "Reggane", "Aoulef", "Tsabit")),
    (2, "Chlef", 600, 3, ("Chlef", "Ténès", "Oued Fodda", "Boukadir", "Chettia")),
    (5, "Batna", 600, 3, ("Batna", "Barika", "Arris", "Merouana", "Aïn Touta")),
    (6, "Béjaïa", 600, 3, ("Béjaïa", "Akbou", "El Kseur", "Amizour", "Sidi Aïch")),
    (7, "Biskra", 800, 2, ("Biskra", "Tolga", "Sidi Okba", "El Kantara")),
    (9, "Blida", 450, 5, ("Blida", "Boufarik", "Ouled Yaïch", "Larbaâ", "Mouzaïa")),
    (10, "Bouira", 550, 2, ("Bouira", "Lakhdaria", "Sour El Ghozlane", "M'Chedallah")),
    (13, "Tlemcen", 650, 3, ("Tlemcen", "Maghnia", "Remchi", "Ghazaouet", "Mansourah")),
    (15, "Tizi Ouzou", 550, 4, ("Tizi Ouzou", "Azazga", "Draâ Ben Khedda", "Tigzirt")),
    (
        16,
        "Alger",
        400,
        14,
        (
            "Bab El Oued",
            "Bir Mourad Raïs",
            "Hussein Dey",
            "Kouba",
            "El Harrach",
            "Bab Ezzouar",
            "Chéraga",
            "Dely Ibrahim",
            "Bordj El Kiffan",
            "Sidi M'Hamed",
        ),
    ),
    (17, "Djelfa", 750, 2, ("Djelfa", "Aïn Oussera", "Messaad", "Hassi Bahbah")),
    (18, "Jijel", 650, 2, ("Jijel", "Taher", "El Milia")),
    (19, "Sétif", 600, 5, ("Sétif", "El Eulma", "Aïn Oulmene", "Bougaa", "Aïn Arnat")),
    (21, "Skikda", 650, 2, ("Skikda", "Azzaba", "Collo", "El Harrouch")),
    (22, "Sidi Bel Abbès", 650, 2, ("Sidi Bel Abbès", "Télagh", "Sfisef", "Ben Badis")),
    (23, "Annaba", 600, 3, ("Annaba", "El Bouni", "El Hadjar", "Sidi Amar", "Berrahal")),
    (
        25,
        "Constantine",
        600,
        5,
        ("Constantine", "El Khroub", "Hamma Bouziane", "Aïn Smara", "Didouche Mourad"),
    ),
    (26, "Médéa", 550, 2, ("Médéa", "Berrouaghia", "Ksar El Boukhari", "Tablat")),
    (27, "Mostaganem", 650, 2, ("Mostaganem", "Hassi Mamèche", "Aïn Tédelès")),
    (30, "Ouargla", 900, 1, ("Ouargla", "Hassi Messaoud", "N'Goussa")),
    (31, "Oran", 550, 8, ("Oran", "Bir El Djir", "Es Senia", "Arzew", "Aïn El Turk")),
    (
        35,
        "Boumerdès",
        450,
        4,
        ("Boumerdès", "Bordj Menaïel", "Khemis El Khechna", "Dellys", "Boudouaou"),
    ),
    (42, "Tipaza", 450, 3, ("Tipaza", "Koléa", "Cherchell", "Hadjout", "Fouka")),
    (47, "Ghardaïa", 850, 1, ("Ghardaïa", "Metlili", "Berriane")),
)
_WILAYA_WEIGHTS = [w[3] for w in WILAYAS]

FIRST_NAMES = (
    "Mohamed",
    "Ahmed",
    "Yacine",
    "Amine",
    "Karim",
    "Rachid",
    "Sofiane",
    "Walid",
    "Bilal",
    "Nabil",
    "Hichem",
    "Riad",
    "Mehdi",
    "Samir",
    "Abdelkader",
    "Youcef",
    "Fares",
    "Ilyes",
    "Amina",
    "Fatima",
    "Sarah",
    "Meriem",
    "Nour El Houda",
    "Imane",
    "Khadidja",
    "Yasmine",
    "Lina",
    "Rania",
    "Asma",
    "Samira",
    "Nadia",
    "Houria",
    "Soumia",
    "Wafa",
    "Chaima",
    "Kenza",
)
LAST_NAMES = (
    "Benali",
    "Bouzid",
    "Haddad",
    "Saadi",
    "Belkacem",
    "Meziane",
    "Brahimi",
    "Cherif",
    "Mansouri",
    "Hamidi",
    "Khelifi",
    "Boudiaf",
    "Rahmani",
    "Zerrouki",
    "Benaissa",
    "Ait Ahmed",
    "Amrani",
    "Larbi",
    "Toumi",
    "Slimani",
    "Benyahia",
    "Kaci",
    "Ouali",
    "Boukhalfa",
    "Djebbar",
    "Hamadouche",
    "Bensalem",
    "Mebarki",
)

# catalogue -> (sku prefix, first product id, ((title, price in DZD), ...))
CATALOGUES: dict[str, tuple[str, int, tuple[tuple[str, int], ...]]] = {
    "cosmetics": (
        "NAT",
        1000,
        (
            ("Huile d'argan 100 ml", 1800),
            ("Savon noir à l'eucalyptus", 650),
            ("Crème hydratante à l'aloe vera", 1500),
            ("Shampooing au romarin", 1200),
            ("Masque capillaire au karité", 1900),
            ("Sérum vitamine C", 2400),
            ("Huile de nigelle 60 ml", 900),
            ("Gommage au café", 1100),
            ("Eau de rose 250 ml", 700),
            ("Baume à lèvres au miel", 450),
        ),
    ),
    "jewelry": (
        "JWL",
        2000,
        (
            ("Bracelet plaqué or", 3500),
            ("Collier prénom personnalisé", 4200),
            ("Bague argent 925", 2800),
            ("Boucles d'oreilles perles", 2200),
            ("Montre femme acier", 5900),
            ("Parure de mariage", 12500),
            ("Chaîne homme acier", 3100),
            ("Khelkhal argent", 4800),
        ),
    ),
    "home": (
        "HOM",
        3000,
        (
            ("Set de 6 verres", 1900),
            ("Parure de lit 2 places", 5400),
            ("Tapis salon 160x230", 8900),
            ("Poêle antiadhésive 28 cm", 2700),
            ("Rideaux occultants", 3900),
            ("Organisateur de cuisine", 1600),
            ("Couscoussier inox", 4500),
            ("Lampe de chevet LED", 2300),
        ),
    ),
    "fashion": (
        "FSH",
        4000,
        (
            ("Djellaba brodée", 6500),
            ("Hijab soie de Médine", 1500),
            ("Abaya noire", 5500),
            ("Robe d'été fleurie", 3800),
            ("Baskets femme", 4200),
            ("Sac à main cuir", 4900),
            ("Ensemble enfant", 2600),
            ("Chemise homme en lin", 3200),
        ),
    ),
    "electronics": (
        "ELC",
        5000,
        (
            ("Écouteurs Bluetooth", 2900),
            ("Chargeur rapide 25 W", 1800),
            ("Montre connectée", 6900),
            ("Coque iPhone", 900),
            ("Power bank 20000 mAh", 3900),
            ("Mini ventilateur USB", 1500),
            ("Enceinte portable", 4800),
            ("Câble USB-C 2 m", 700),
        ),
    ),
}

# (maximum age in days, ((state, weight), ...)): the states an order of that age is in.
_STATES_BY_AGE: tuple[tuple[float, tuple[tuple[str, int], ...]], ...] = (
    (1.0, (("En dispatch", 55), ("Confirmé", 30), ("Annulé", 15))),
    (3.0, (("Confirmé", 20), ("En cours", 40), ("Expédié", 25), ("Annulé", 15))),
    (8.0, (("Expédié", 45), ("Livré", 35), ("Retourné", 5), ("Annulé", 15))),
    (float("inf"), (("Livré", 72), ("Retourné", 10), ("Annulé", 18))),
)


OPEN_AGE_DAYS = max(
    limit
    for limit, states in _STATES_BY_AGE
    if limit != float("inf") and any(s not in ("Livré", "Annulé", "Retourné") for s, _ in states)
)
"""Orders generated older than this are all in a final state (Livré, Annulé, Retourné)."""


def timestamp(moment: datetime) -> str:
    """ISO-8601 the way Laravel serialises dates: 2024-05-17T10:23:45.000000Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def confirmation_for(state: str, rng: random.Random | None = None) -> str:
    """The confirmation state that goes with an order state."""
    if state == "En dispatch":
        if rng is None:
            return "En attente"
        return rng.choices(("En attente", "Injoignable", "Reporté"), (70, 20, 10))[0]
    if state == "Annulé":
        if rng is None:
            return "Annulé"
        return rng.choices(("Annulé", "Injoignable", "Double"), (60, 25, 15))[0]
    return "Confirmé"


def _money(amount: int) -> str:
    return f"{amount}.00"


@dataclass(frozen=True)
class OrderFactory:
    """Builds the orders of one store; the same (key, id) always gives the same order."""

    identifier: str
    key: int
    first_id: int
    last_id: int
    catalog: str
    started: datetime
    until: datetime

    @property
    def seconds_per_id(self) -> int:
        """Time between consecutive ids, so the initial orders span started..until."""
        span = int((self.until - self.started).total_seconds())
        return max(2, span // max(1, self.last_id - self.first_id))

    def created_at(self, order_id: int, jitter: int) -> datetime:
        """Creation time: linear in the id plus a jitter under half a step (stays increasing)."""
        step = self.seconds_per_id
        return self.started + timedelta(
            seconds=(order_id - self.first_id) * step + jitter % (step // 2)
        )

    def build(self, order_id: int) -> dict[str, Any]:
        """The order with this id, as the API serves it."""
        rng = random.Random(mix64(self.key ^ ((order_id * GOLDEN) & M64) ^ 0x5EED))
        step = self.seconds_per_id
        created = self.created_at(order_id, rng.getrandbits(32))
        updated = created + timedelta(seconds=rng.randrange(step // 2))
        age_days = (self.until - created).total_seconds() / 86400
        states = next(s for limit, s in _STATES_BY_AGE if age_days < limit)
        state = rng.choices([s for s, _ in states], [w for _, w in states])[0]
        _code, wilaya, fee, _weight, communes = rng.choices(WILAYAS, _WILAYA_WEIGHTS)[0]
        prefix, first_product, products = CATALOGUES[self.catalog]
        picks = rng.sample(range(len(products)), rng.choices((1, 2, 3), (60, 30, 10))[0])
        items = []
        total_products = 0
        for p in sorted(picks):
            title, price = products[p]
            quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
            total_products += quantity * price
            items.append(
                {
                    "product_id": first_product + p,
                    "sku": f"{prefix}-{p + 1:03d}",
                    "title": title,
                    "quantity": quantity,
                    "selling_price": _money(price),
                }
            )
        return {
            "id": order_id,
            "reference": f"{self.identifier}{order_id}",
            "order_state_name": state,
            "confirmation_state_name": confirmation_for(state, rng),
            "full_name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "telephone": f"0{rng.choice('567')}{rng.randrange(10**8):08d}",
            "wilaya": wilaya,
            "commune": rng.choice(communes),
            "items": items,
            "total_products": _money(total_products),
            "total": _money(total_products + fee),
            "created_at": timestamp(created),
            "updated_at": timestamp(updated),
        }


def wholesale(order: dict[str, Any], lines: int) -> dict[str, Any]:
    """``order`` as a wholesale order: its items repeated to ``lines`` lines, totals to match.

    Each line is a JSON object of about 110 bytes, so a few thousand lines make a body
    larger than a webhook receiver's size limit, as a real bulk order can.
    """
    base = order["items"]
    fee = int(float(order["total"])) - int(float(order["total_products"]))
    items = []
    total = 0
    for k in range(lines):
        item = base[k % len(base)]
        price = int(float(item["selling_price"]))
        total += price * item["quantity"]
        items.append({**item, "sku": f"{item['sku']}-L{k + 1:05d}"})
    return {**order, "items": items, "total_products": _money(total), "total": _money(total + fee)}
