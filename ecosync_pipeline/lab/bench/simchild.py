"""The simulator process of a benchmark: ``python -m ecosync_pipeline.lab.bench.simchild``.

Reads a length line and the pickled (specs, seed) from stdin, serves them on a free
port of 127.0.0.1, prints the port, and serves until its stdin closes (the parent
closed it, or died). Started by bench.simserver.served_simulator only.
"""

from __future__ import annotations

import logging
import pickle
import sys

from ecosync_pipeline.lab.simulator import Simulator, SimulatorServer


def main() -> None:
    """Serve the specs read from stdin until stdin closes."""
    logging.basicConfig(level=logging.WARNING)
    size = int(sys.stdin.buffer.readline())
    # The payload comes from the parent process through a pipe, never from outside.
    specs, seed = pickle.loads(sys.stdin.buffer.read(size))
    server = SimulatorServer(Simulator(specs, seed=seed)).start()
    try:
        sys.stdout.write(f"{server.port}\n")
        sys.stdout.flush()
        sys.stdin.buffer.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
