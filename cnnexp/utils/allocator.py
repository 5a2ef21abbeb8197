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

A run that streams its images from files (`bound_to_batch`) gives that up for blocks of STREAM_MMAP_THRESHOLD
(8 MB) and more: its memory must follow the batch, and a heap does not. Served from the heap, a 224 px
batch's activations (8-100 MB each for small_cnn at batch 64) leave holes between the small allocations
that outlive a step (tensor headers, Python objects), and a heap can only give back its top: the main
process held 0.6-1.2 GB of free heap beside 0.2 GB in use after 20 steps, and the streamed 25,000-photo
run peaked at 2.0-2.9 GB PSS (2.0 GB with glibc's own settings too, whose mmap threshold grows to
32 MB). Mapped on their own, those blocks go back when freed: 1.27 GB (benchmarks/data_scale.py,
docs/results/data-scale.md). The faults this costs are small beside decoding 64 JPEGs a step.
"""

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 1 << 30  # allocations below 1 GB come from the heap, reused once freed
TRIM_THRESHOLD = 64 << 20  # free memory kept at the heap's top before any is given back
STREAM_MMAP_THRESHOLD = 8 << 20  # a streamed run: blocks from 8 MB on are mapped on their own, returned when freed
OFF = "CNNEXP_MALLOC_DEFAULTS"  # set to 1 to keep glibc's own behaviour (less memory held, slower)
USERS_OWN = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES", "LD_PRELOAD")


_tuned = False  # keep_freed_memory tuned this process: bound_to_batch may lower its threshold


def mallopt():
    """glibc's mallopt, or None (macOS, Windows, musl: another allocator, not tuned here)."""
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for this process (and the processes it forks); False where it is left alone:
    not glibc, switched off with CNNEXP_MALLOC_DEFAULTS=1, or the user's own malloc settings or allocator."""
    global _tuned
    setting = None if os.environ.get(OFF, "") not in ("", "0") or any(map(os.environ.get, USERS_OWN)) else mallopt()
    _tuned = setting is not None and bool(setting(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        setting(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def bound_to_batch() -> bool:
    """A run streams its images: blocks of STREAM_MMAP_THRESHOLD and more are mapped on their own again
    (see above). Only where keep_freed_memory tuned this process (the command line; a library caller's
    process and the user's own settings are left as they are); whether it did."""
    setting = mallopt() if _tuned else None
    return setting is not None and bool(setting(M_MMAP_THRESHOLD, STREAM_MMAP_THRESHOLD))
