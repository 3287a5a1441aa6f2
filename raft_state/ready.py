"""The runnable set: pending jobs whose dependencies are met and whose backoff is over.

Jobs are grouped by placement class (tags and requirements), one heap per class ordered by
(-priority, seq): higher priority first, FIFO by submission sequence within a priority. The
scheduler walks only the classes some worker can take, so a head of jobs that no worker can run
costs nothing. Heaps delete lazily; an entry is live while `_live[job_id] is entry`.

Memory matters at a million pending jobs: an entry is one tuple that also names its class, and
equal class keys are interned, so a ready job costs one tuple plus a dict slot.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from itertools import repeat
from typing import Any

ClassKey = tuple[Any, ...]
Entry = tuple[int, int, str, ClassKey]  # (-priority, seq, job_id, class); seq is unique, so it decides


class ReadyQueue:
    __slots__ = ("_heaps", "_live", "_dead", "_canon")

    def __init__(self) -> None:
        self._heaps: dict[ClassKey, list[Entry]] = {}
        self._live: dict[str, Entry] = {}
        self._dead: dict[ClassKey, int] = {}
        self._canon: dict[ClassKey, ClassKey] = {}  # one shared key object per class

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._live

    def add(self, job_id: str, priority: int, seq: int, klass: ClassKey) -> None:
        if job_id in self._live:
            return
        heap = self._heaps.get(klass)
        if heap is None:
            heap = self._heaps[klass] = []
            self._dead[klass] = 0
            self._canon[klass] = klass
        else:
            klass = self._canon[klass]
        entry: Entry = (-priority, seq, job_id, klass)
        self._live[job_id] = entry
        heapq.heappush(heap, entry)

    def add_ordered(self, klass: ClassKey, job_ids: list[str], neg_priorities: list[int], seqs: list[int]) -> None:
        """A whole class at once, its jobs already in (-priority, seq) order (a sorted list is a heap),
        into a queue that holds none of that class: built without a Python step per job."""
        if klass in self._heaps:
            raise ValueError("add_ordered needs a class the queue does not hold")
        heap = self._heaps[klass] = list(zip(neg_priorities, seqs, job_ids, repeat(klass)))
        self._dead[klass] = 0
        self._canon[klass] = klass
        live = len(self._live)
        self._live.update(zip(job_ids, heap))
        if len(self._live) != live + len(heap):
            raise ValueError("a job is ready twice")

    def discard(self, job_id: str) -> None:
        entry = self._live.pop(job_id, None)
        if entry is None:
            return
        klass = entry[3]
        heap = self._heaps[klass]
        if heap[0] is entry:
            heapq.heappop(heap)
            self._trim(klass, heap)
            return
        self._dead[klass] += 1
        if self._dead[klass] > 64 and self._dead[klass] * 2 > len(heap):
            heap[:] = [e for e in heap if self._is_live(e)]
            heapq.heapify(heap)
            self._dead[klass] = 0

    def _is_live(self, entry: Entry) -> bool:
        return self._live.get(entry[2]) is entry

    def _trim(self, klass: ClassKey, heap: list[Entry]) -> None:
        """Pop dead entries off the top so every head is live."""
        while heap and not self._is_live(heap[0]):
            heapq.heappop(heap)
            self._dead[klass] -= 1
        if not heap:
            del self._heaps[klass]
            del self._dead[klass]
            del self._canon[klass]

    def classes(self) -> list[ClassKey]:
        return list(self._heaps)

    def class_size(self, klass: ClassKey) -> int:
        heap = self._heaps.get(klass)
        return 0 if heap is None else len(heap) - self._dead[klass]

    def _walk(self, heap: list[Entry]) -> Iterator[Entry]:
        """Entries of one heap in order without popping: a best-first walk of the heap tree."""
        if not heap:
            return
        frontier = [(heap[0], 0)]
        size = len(heap)
        while frontier:
            entry, i = heapq.heappop(frontier)
            if self._is_live(entry):
                yield entry
            for child in (2 * i + 1, 2 * i + 2):
                if child < size:
                    heapq.heappush(frontier, (heap[child], child))

    def walk(self, classes: list[ClassKey]) -> Walk:
        """Ready entries of `classes` in priority order, as `iter_ready` gives them, where a class
        can be dropped midway (`Walk.drop`). The caller must not change the queue meanwhile."""
        return Walk(self, classes)

    def iter_ready(self, accept_class: Callable[[ClassKey], bool] | None = None) -> Iterator[str]:
        """Ready job ids in priority order across the classes `accept_class` admits.

        The caller must not change the queue while it iterates.
        """
        heaps = [h for k, h in self._heaps.items() if accept_class is None or accept_class(k)]
        for entry in heapq.merge(*(self._walk(h) for h in heaps)):
            yield entry[2]


class Walk:
    """A merge of some classes' heaps, best entry first; a dropped class yields nothing more and
    costs nothing more (a planner drops a class that fits no worker now: the rest of it would not
    fit either). A class's walk starts from its heap's head, which is always live, and goes
    further only when that head was taken: a plan of one job looks at one entry per class."""

    __slots__ = ("_queue", "_walks", "_heads", "_dropped")

    def __init__(self, queue: ReadyQueue, classes: list[ClassKey]) -> None:
        self._queue = queue
        self._walks: dict[ClassKey, Iterator[Entry]] = {}
        heads = self._heads = [(heap[0], n) for n, klass in enumerate(classes) if (heap := queue._heaps.get(klass))]
        heapq.heapify(heads)  # entries differ by seq: the class index never decides
        self._dropped: set[ClassKey] = set()

    def __iter__(self) -> Iterator[Entry]:
        heads, walks, dropped = self._heads, self._walks, self._dropped
        while heads:
            entry, n = heads[0]
            klass = entry[3]
            if klass in dropped:
                heapq.heappop(heads)
                continue
            walk = walks.get(klass)
            if walk is None:
                walk = walks[klass] = self._queue._walk(self._queue._heaps[klass])
                next(walk)  # the head, this very entry
            following = next(walk, None)
            if following is None:
                heapq.heappop(heads)
            else:
                heapq.heapreplace(heads, (following, n))
            yield entry

    def drop(self, klass: ClassKey) -> None:
        self._dropped.add(klass)
