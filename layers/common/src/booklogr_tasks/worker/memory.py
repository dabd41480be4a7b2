"""Give memory a finished job freed back to the operating system.

CPython returns small objects to its own allocator and large ones to glibc's malloc, which keeps
freed pages in its arenas (one per thread that allocated) instead of returning them: after one
large import a listener stayed hundreds of MB above its idle size. malloc_trim(0) returns the
free pages of every arena. Elsewhere than glibc (musl, macOS) there is nothing to call, and
nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import lru_cache

# Jobs that spent less CPU time than this allocated too little to be worth a trim, which costs
# a full garbage collection (quick jobs come by the thousand). CPU time of the job's own
# thread, not wall time: under load ten small exports running side by side each took over
# 0.2 s of wall time for some 3 ms of CPU, and the trims after them took 29% of the listener's
# CPU. Allocating a lot takes CPU time, waiting for the disk or the GIL does not.
TRIM_AFTER_CPU_SECONDS = 0.1


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_memory() -> bool:
    """Collect cycles, then hand free heap pages back; True when malloc_trim was called."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def after_job(cpu_seconds: float) -> None:
    """Called in the job's thread when it ends, with the CPU time it used (time.thread_time()):
    release memory if the job was a large one."""
    if cpu_seconds >= TRIM_AFTER_CPU_SECONDS:
        release_memory()
