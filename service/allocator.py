"""glibc malloc settings for torch's CPU work, applied once per ``apudae`` process (``tune_allocator``).

With glibc's defaults a purification step's activations (1.6 MB per layer for a batch of 32 MNIST images)
are returned to the kernel when freed and faulted in again at the next step: about 60,000 minor page faults
per call of a 32-image batch, and each thread that allocates gets an arena of its own. Three settings stop
that, measured together on the compute thread (+15-30 % images/s, docs/PERFORMANCE.md, "The compute
thread"); neither alone did:

- ``M_ARENA_MAX`` 1: every thread allocates from the main arena;
- ``M_MMAP_THRESHOLD`` 32 MiB (glibc's largest): blocks under it come from the heap, not fresh mappings;
- ``M_TRIM_THRESHOLD`` 1 GiB: the heap keeps up to 1 GiB of freed memory at its top for reuse.

So a process keeps up to 1 GiB it no longer uses. Nothing is changed where the C library is not glibc or
where the environment already sets any of glibc's own variables for these (``MALLOC_ARENA_MAX``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``): the operator's choice wins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
SETTINGS = {M_ARENA_MAX: 1, M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 2**30}
OPERATOR_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_allocator() -> bool:
    """Apply ``SETTINGS`` with glibc's mallopt; True when all were applied, False when skipped or refused.
    Call it before the process starts its threads (an existing thread keeps its arena)."""
    if any(name in os.environ for name in OPERATOR_VARIABLES):
        return False
    library = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(library).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): keep its allocator as it is
        return False
    applied = all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items())
    if not applied:
        log.warning("glibc refused a malloc setting; torch's CPU work may fault its memory in at every step")
    return applied
