"""An adversarial EcoManager server: the contract's corners the simulator does not show.

Each store served is an ``AdversarialStore`` whose quirks (an odd field on one order, a
capped or short page, a page ignored, a token echoed back, a body of 40 MB, a cursor
that ends early) reproduce one corner of the contract, over real HTTP.
"""

from ecosync_pipeline_tests.adversarial.server import AdversarialServer, AdversarialStore

__all__ = ["AdversarialServer", "AdversarialStore"]
