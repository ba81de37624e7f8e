"""Run a build step's independent jobs in worker processes, with one progress bar.

Gold queries and integrity checks on BIRD's multi-gigabyte databases take minutes
each on one core; they share nothing, so they run in a process pool (SQLite work
holds the GIL only between calls, but a process is also what a runaway query
cannot outlive). With one worker, or one job, everything runs in this process.
"""

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    """``[fn(job) for job in jobs]``, in worker processes, in the jobs' order.

    Args:
        fn: A module-level function (it is pickled to the workers).
        jobs: Its arguments, one per call.
        workers: Processes to use; 1 runs everything here.
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
        # spawn: workers start clean, whatever threads the caller runs.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(sizes[i])
    return results  # type: ignore[return-value]
