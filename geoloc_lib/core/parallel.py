"""Independent jobs side by side on a CPU's cores (core): training runs, benchmark runs.

On a small CPU one run with every core leaves them waiting on each other between small operators;
``parallel_runs`` runs with ``cores // parallel_runs`` threads each keep every core on arithmetic
(2 cores: 1.3–1.4× the training throughput of 3-epoch runs, 1.1–1.25× for notebook 01's and
04's sets of long runs; docs/benchmarks.md). Each job runs in a spawned worker process (a clean
torch per process, its thread count set before any work). A job's numbers depend in their last
bits on its thread count, so callers record it (``run.json``'s ``machine``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from geoloc_lib.core.errors import ConfigError


def check_parallel_runs(value: object) -> int:
    """``parallel_runs`` as an integer >= 1 (a clear error otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"parameter parallel_runs: expected an integer >= 1, got {value!r}")
    return value


def runs_at_once(parallel_runs: object, device: str = "auto", jobs: int | None = None) -> int:
    """How many runs train at once: ``parallel_runs`` on a CPU, at most ``jobs`` (the runs to
    train); 1 on an accelerator (a warning says so), where the runs would share one device
    instead of cores. At 1 a caller trains its runs in this process, on every core."""
    from geoloc_lib.core.device import resolve_device

    n = check_parallel_runs(parallel_runs)
    if jobs is not None:
        n = min(n, max(1, jobs))
    dev = resolve_device(device)
    if n > 1 and dev.type != "cpu":
        warnings.warn(
            f"parallel_runs={n} shares a CPU's cores between runs; on {dev} the runs train one "
            "at a time",
            UserWarning,
            stacklevel=3,
        )
        return 1
    return n


def _with_threads(task: tuple[Callable[..., Any], int, tuple]) -> Any:
    """A worker's call: ``fn(*args)`` on ``threads`` torch threads."""
    import torch

    fn, threads, args = task
    torch.set_num_threads(threads)
    return fn(*args)


def map_side_by_side(
    fn: Callable[..., Any], jobs: Sequence[tuple], parallel_runs: int
) -> list[Any]:
    """``[fn(*job) for job in jobs]``, ``parallel_runs`` jobs at a time, each in a spawned worker
    with ``cores // parallel_runs`` torch threads (``fn``, its arguments and results are pickled:
    a module-level function). ``parallel_runs`` is capped at the number of jobs; at 1 ``fn`` is
    called here, on this process's threads.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import torch

    # Fewer jobs than parallel_runs: each gets the cores the others would have had (a grid with
    # one run left to train trains it on every core, here).
    parallel_runs = min(check_parallel_runs(parallel_runs), max(1, len(jobs)))
    if parallel_runs == 1:
        return [fn(*job) for job in jobs]
    threads = max(1, torch.get_num_threads() // parallel_runs)
    tasks = [(fn, threads, tuple(job)) for job in jobs]
    try:
        with ProcessPoolExecutor(
            max_workers=parallel_runs, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            return list(pool.map(_with_threads, tasks))
    except BrokenProcessPool as err:
        raise ConfigError(
            f"parameter parallel_runs={parallel_runs}: a worker process stopped abruptly. "
            'Called from a Python script, put the call under `if __name__ == "__main__":` '
            "(the workers are spawned and import the script again); a worker killed for lack "
            "of memory stops it too. parallel_runs=1 runs the jobs one at a time in this process"
        ) from err
