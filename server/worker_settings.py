"""How many SQL workers a pool keeps, may grow to, what each may use, and
what the pool counts.

The defaults come from the machine: the cores this process may run on (so SQL
runs on every core) and the memory its container may use (so all workers'
memory caps together stay within half of it: running out is a clear error in
one worker, never a host out of memory).
"""

import contextlib
import os
from dataclasses import dataclass, field

DEFAULT_MEMORY_MB = 512
# A server's workers run below its priority, so its event loop is never starved.
SERVER_WORKER_NICE = 10
# Share of the machine's memory that all workers' caps together may reach.
MEMORY_SHARE = 0.5


def available_cores() -> int:
    """The CPUs this process may run on (its affinity), at least one."""
    with contextlib.suppress(AttributeError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def memory_limit_bytes() -> int:
    """The memory this process's container may use, or the machine's."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit"):
        with contextlib.suppress(OSError, ValueError):
            text = open(path).read().strip()  # noqa: SIM115
            if text.isdigit() and int(text) < 2**60:
                return int(text)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How many workers, and how much each may use.

    Attributes:
        workers: Workers kept running (default: the available cores, so SQL runs
            on every core).
        max_workers: Workers allowed at once while slow statements hold some
            (default: as many as fit in half the memory at ``memory_mb`` each).
        memory_mb: Each worker's address-space cap.
        nice: Each worker's niceness. A server lowers its workers' priority
            below its event loop's (``SERVER_WORKER_NICE``); in a trainer, where
            torch keeps every core busy, workers keep the process's priority.
    """

    workers: int = field(default_factory=available_cores)
    max_workers: int | None = None
    memory_mb: int = DEFAULT_MEMORY_MB
    nice: int = 0

    @property
    def ceiling(self) -> int:
        if self.max_workers is not None:
            return max(self.workers, self.max_workers)
        fit = int(memory_limit_bytes() * MEMORY_SHARE) // (self.memory_mb * 2**20)
        return max(self.workers, fit)


@dataclass
class PoolStats:
    """A pool's counters, for tests, benchmarks and logs."""

    started: int = 0
    killed: int = 0
    died: int = 0
    jobs: int = 0
    failures: int = 0
