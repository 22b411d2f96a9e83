"""The process's memory: its peak, and keeping glibc's heap from holding on to freed batches."""

import ctypes
import os
import resource
import sys
import time
from contextlib import contextmanager


def peak_memory_mb():
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024**2


@contextmanager
def measured(name, *, seconds, peaks):
    """Add how long the block took to ``seconds[name]`` (a stage may run in several blocks) and record
    the process's peak memory by its end in ``peaks[name]`` (MB; the peak so far, so the first stage
    whose entry jumps is the one that needed the memory)."""
    start = time.perf_counter()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    peaks[name] = round(peak_memory_mb(), 1)


def bound_heap_growth():
    """Serve allocations of 8 MiB and more (encoding batches) straight from the OS on glibc.

    glibc raises its mmap threshold after the first large free, so later 12 MB batch
    buffers come from a heap that, fragmented by training's many small allocations, is not
    given back: encoding 1M samples then grew the heap by ~2.5 GB. A fixed threshold keeps
    the 1M-sample run near 1.3 GB. Done for the CLI process only; library users can set
    MALLOC_MMAP_THRESHOLD_=8388608 MALLOC_TRIM_THRESHOLD_=16777216 themselves.
    """
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 8 << 20)  # M_MMAP_THRESHOLD
            # A fixed threshold also freezes the trim threshold at 128 KiB, which would hand
            # the heap's top back to the OS after every training step; keep it as glibc would.
            libc.mallopt(-1, 16 << 20)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            pass  # not glibc: nothing to tune
