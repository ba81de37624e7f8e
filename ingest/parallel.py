"""Run a build step's independent jobs on worker threads, with one progress bar.

Gold queries and integrity checks on BIRD's multi-gigabyte databases take minutes
each on one core. They share nothing, and SQLite releases the GIL while a
statement runs, so threads can run them on several cores; unlike worker processes,
threads need no importable ``__main__`` (a notebook, ``python -``) and copy nothing.
"""

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_jobs(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    *,
    workers: int,
    desc: str,
    unit: str,
    sizes: Sequence[int] | None = None,
) -> list[R]:
    """``[fn(job) for job in jobs]`` on worker threads, in the jobs' order.

    Args:
        fn: Called once per job, on any thread; jobs must not share state.
        jobs: Its arguments, one per call.
        workers: Threads to use; 1 runs everything on this thread.
        desc: The progress bar's label.
        unit: What the bar counts.
        sizes: How much each job advances the bar (default: 1 each).
    """
    sizes = list(sizes) if sizes is not None else [1] * len(jobs)
    results: list[R | None] = [None] * len(jobs)
    with tqdm(total=sum(sizes), desc=desc, unit=unit) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = fn(job)
                bar.update(sizes[i])
            return results  # type: ignore[return-value]
        with ThreadPoolExecutor(min(workers, len(jobs))) as pool:
            futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(sizes[i])
    return results  # type: ignore[return-value]
