"""A local EcoManager server for tests, benchmarks and the demo.

It serves the contract of ecomanager-api.md for every configured store under a path
prefix (``http://127.0.0.1:8765/NATUR/api/shop/v2/orders?page=N&per_page=M``),
computes each store's ids and orders on demand from a seed (a store of 180,000 orders
costs a few kilobytes and any page a few milliseconds), and lets a test or a benchmark
change the store under the client (new orders, deletions, status changes) and turn
faults on (latency, 429, 503, timeouts, malformed pages, refused tokens), from Python
or over HTTP. Besides ascending pages it serves the contract's other ways of reading
(newest first by page, ``sort=-id``; Laravel's keyset cursor, ``sort_direction=desc``;
one order, ``/orders/{id}``: reading.py), moves open orders through their states over
time (flow.py), enforces the four rate-limit windows per store (windows.py), and
reports every change to its observers.

The demo stores (data/stores.yaml; counts are for seed 0):

- NATUR ids 1..181,601, JWLR 1..177,606, DILST 1..100,000, MGSTR 1..102,337, each
  with about 3% of ids missing (deleted orders): NATUR serves 176,141 orders on 8,808
  pages of 20, so id / 20 (9,080) overshoots its last page by some 270 pages.
- PURNA: 30,000 orders whose ids start at 500,000 with a mean step of 7 (and 3%
  gaps), up to id 717,151. Its last page at 20 a page is 1,500 while id / 20 says
  35,857: an estimate from the id overshoots the last page by some 34,000 pages. The
  original system's PURNA position (page 9,504 for last id 9,509) showed ids and pages
  are unrelated; offset, sparse ids make that gap as large as it can get.

Entry points: Simulator (in-process object and control API), StoreSpec (a store's
shape), create_app (ASGI app), SimulatorServer (uvicorn in a thread), SimulatorClient
(the control API over HTTP), demo_token (the token a store accepts when its token
variable is unset). ``Simulator.webhooks`` holds the registered webhooks and delivers
each change, signed and retried as EcoManager does (webhooks.py, delivery.py).
"""

from __future__ import annotations

from ecosync_pipeline.ecomanager.client import ORDERS_PATH
from ecosync_pipeline.lab.simulator.app import create_app
from ecosync_pipeline.lab.simulator.client import SimulatorClient
from ecosync_pipeline.lab.simulator.core import Simulator
from ecosync_pipeline.lab.simulator.faults import FailKind, Faults, Outcome, RequestRecord
from ecosync_pipeline.lab.simulator.orders import ORDER_STATES
from ecosync_pipeline.lab.simulator.responder import Reply, check_authorization
from ecosync_pipeline.lab.simulator.server import SimulatorServer
from ecosync_pipeline.lab.simulator.spec import SimulatorError, StoreSpec, UnknownStore, demo_token
from ecosync_pipeline.lab.simulator.store import Change, ChangeKind, Observer

__all__ = [
    "ORDERS_PATH",
    "ORDER_STATES",
    "Change",
    "ChangeKind",
    "FailKind",
    "Faults",
    "Observer",
    "Outcome",
    "Reply",
    "RequestRecord",
    "Simulator",
    "SimulatorClient",
    "SimulatorError",
    "SimulatorServer",
    "StoreSpec",
    "UnknownStore",
    "check_authorization",
    "create_app",
    "demo_token",
]
