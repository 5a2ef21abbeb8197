"""glibc's malloc told to keep the memory tensors free, instead of giving it back to the system after every
step and faulting it in again, page by page, for the next one.

By default glibc serves a large allocation (a batch's activations, a gradient) with its own `mmap` and
unmaps it when freed, and trims freed memory off the top of its heap once more than 128 KB lie there:
the 20-epoch Olivetti tutorial run took 1.65 million page faults and 5.4 s of system CPU (of 31 s) for it.
With allocations below 1 GB served from the heap and up to TRIM_THRESHOLD (64 MB, the most glibc's own
dynamic threshold reaches) kept free at its top, it takes 0.2 million. Measured with `benchmarks/compare.py`
against the commit before (docs/results/speed.md): MNIST LeNet 0.96x the wall and CPU time (1.03x in a
noisier call: within noise), AlexNet-BN at 227 px 0.96x / 0.97x, the served model 0.98x a request; the
process holds more memory between steps (peak resident memory +8 to +16 %: MNIST 1.01 -> 1.18 GB,
AlexNet-BN 1.91 -> 2.09 GB). PyTorch's performance guide gets the same from jemalloc or tcmalloc; this
needs no other library.
"""

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 1 << 30  # allocations below 1 GB come from the heap, reused once freed
TRIM_THRESHOLD = 64 << 20  # free memory kept at the heap's top before any is given back
OFF = "CNNEXP_MALLOC_DEFAULTS"  # set to 1 to keep glibc's own behaviour (less memory held, slower)
USERS_OWN = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for this process (and the processes it forks); False where it is left alone:
    not glibc, switched off with CNNEXP_MALLOC_DEFAULTS=1, or the user's own malloc settings or allocator."""
    if os.environ.get(OFF, "") not in ("", "0") or any(os.environ.get(name) for name in USERS_OWN):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # macOS, Windows, musl: another allocator, not tuned here
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
