"""Mapping a function over chunks of an index build in forked processes, results in order.

The function may be a closure over large arrays (memory-mapped thumbnails, the distractors' sources):
the children are forked after it is set, inherit it, and only the chunk's arguments and results travel
between processes.
"""

from __future__ import annotations

_job = None


def _call(*args):
    return _job(*args)


def ordered_map(function, *iterables, workers: int = 1):
    """``map(function, *iterables)``; with ``workers`` > 1 in that many forked processes, lazily, in order."""
    if workers <= 1:
        yield from map(function, *iterables)
        return
    global _job
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _job = function
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            yield from pool.map(_call, *iterables)
    finally:
        _job = None
