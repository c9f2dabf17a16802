"""A store's initial order ids, computed on demand instead of held in memory.

Candidate ``j`` (0, 1, 2, ...) has the id ``first_id + stride_1 + ... + stride_j`` and is
missing (a deleted order, a gap) when its hash falls under ``gap_rate``; both come from
a cheap 64-bit hash of (store key, j). Only a small table is kept: for every block of
BLOCK candidates, the id of its first candidate and the number of surviving orders
before it. Position -> id and id -> position are then a bisect on that table plus a
scan of at most one block (a few hundred hashes, well under a millisecond), whatever
the size of the store. The first and the last candidate always survive, so a spec's
``first_id`` and ``last_id`` are exact.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator

BLOCK = 256
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
LOW32 = (1 << 32) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + GOLDEN) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


class IdSpace:
    """The immutable, initial id sequence of one store (before any runtime change)."""

    def __init__(
        self,
        key: int,
        first_id: int,
        *,
        count: int | None = None,
        last_id: int | None = None,
        gap_rate: float = 0.0,
        stride: int = 1,
    ) -> None:
        if (count is None) == (last_id is None):
            raise ValueError("give exactly one of count and last_id")
        self.key = key
        self.first_id = first_id
        self.gap_threshold = int(gap_rate * (1 << 32))
        # Steps are uniform in 1..2*stride-1, so their mean is ``stride``.
        self.step_span = 2 * stride - 1
        self._block_ids = array("q")
        self._block_ranks = array("q")
        self.size = 0  # surviving orders
        self.candidates = 0
        self.last_id = first_id - 1
        if count == 0:
            return
        self._build(count, last_id)

    def _hash(self, j: int) -> int:
        return mix64(self.key ^ ((j * GOLDEN) & M64))

    def _build(self, count: int | None, last_id: int | None) -> None:
        key, span, threshold = self.key, self.step_span, self.gap_threshold
        block_ids, block_ranks = self._block_ids, self._block_ranks
        j = 0
        current = self.first_id
        survivors = 0
        while True:
            h = mix64(key ^ ((j * GOLDEN) & M64))
            if j:
                current += 1 + (h >> 32) % span
            final = last_id is not None and current >= last_id
            if final:
                current = last_id  # type: ignore[assignment]
            if j % BLOCK == 0:
                block_ids.append(current)
                block_ranks.append(survivors)
            if j == 0 or final or (h & LOW32) >= threshold:
                survivors += 1
                if count is not None and survivors == count:
                    final = True
            if final:
                break
            j += 1
        self.candidates = j + 1
        self.size = survivors
        self.last_id = current

    def _scan(self, block: int) -> Iterator[tuple[int, bool]]:
        """(id, survives) for every candidate from the start of ``block`` to the end."""
        key, span, threshold = self.key, self.step_span, self.gap_threshold
        last_j = self.candidates - 1
        j = block * BLOCK
        current = self._block_ids[block]
        while j <= last_j:
            h = mix64(key ^ ((j * GOLDEN) & M64))
            if j != block * BLOCK:
                current = self.last_id if j == last_j else current + 1 + (h >> 32) % span
            yield current, (j == 0 or j == last_j or (h & LOW32) >= threshold)
            j += 1

    def iter_from(self, index: int) -> Iterator[int]:
        """The surviving ids from position ``index`` (0-based) onwards, ascending."""
        if index >= self.size:
            return
        index = max(0, index)
        block = bisect_right(self._block_ranks, index) - 1
        rank = self._block_ranks[block]
        for order_id, alive in self._scan(block):
            if alive:
                if rank >= index:
                    yield order_id
                rank += 1

    def id_at(self, index: int) -> int:
        """The id at position ``index`` (0-based) among the surviving orders."""
        if not 0 <= index < self.size:
            raise IndexError(f"position {index} is outside 0..{self.size - 1}")
        return next(self.iter_from(index))

    def locate(self, order_id: int) -> tuple[int, bool]:
        """(number of surviving ids below ``order_id``, whether ``order_id`` survives)."""
        if self.size == 0 or order_id < self.first_id:
            return 0, False
        if order_id > self.last_id:
            return self.size, False
        block = bisect_right(self._block_ids, order_id) - 1
        rank = self._block_ranks[block]
        for candidate, alive in self._scan(block):
            if candidate >= order_id:
                return rank, candidate == order_id and alive
            if alive:
                rank += 1
        return rank, False  # not reached: the last candidate is last_id

    def __iter__(self) -> Iterator[int]:
        return self.iter_from(0)

    def __len__(self) -> int:
        return self.size
