"""glibc's malloc keeps freed tensor memory for the next step (cnnexp/utils/allocator.py), unless the user
chose their own malloc settings or switched it off."""

import os
import subprocess
import sys

import pytest

# allocate, touch and free a 40 MB tensor (above the 32 MB glibc always maps on its own, below the 64 MB
# kept) a few times (the heap settles), then count the page faults of doing it 20 times more
FAULTS_OF_LATER_STEPS = """
import os, resource, sys, torch
from cnnexp.utils.allocator import bound_to_batch, keep_freed_memory
tuned = keep_freed_memory() if os.environ.get("TUNE", "1") == "1" else False
if os.environ.get("STREAM") == "1":
    tuned = bound_to_batch()
def step():
    torch.ones(10 << 20).sum()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 20 * (40 << 20) // 4096


def later_steps(**env) -> tuple[bool, int]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "CNNEXP_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_LATER_STEPS], env={**environment, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                                reason="mallopt is glibc's")


@glibc_only
def test_freed_tensor_memory_is_reused_without_faulting_its_pages_in_again():
    tuned, faults = later_steps()
    assert tuned and faults < PAGES // 4, faults  # a step now and then may still map anew
    untuned, faults = later_steps(CNNEXP_MALLOC_DEFAULTS="1")  # glibc's own way: the pages come back each time
    assert not untuned and faults > PAGES // 2, faults


@glibc_only
def test_a_streamed_run_maps_large_blocks_on_their_own_again():
    """Memory that follows the batch: a 40 MB block is returned when freed (its pages fault in again at
    the next step) once the run is known to stream; a process not tuned (a library caller) is left alone."""
    bounded, faults = later_steps(STREAM="1")
    assert bounded and faults > PAGES // 2, faults
    assert later_steps(STREAM="1", TUNE="0")[0] is False


@glibc_only
@pytest.mark.parametrize("users_own", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"])
def test_the_users_own_malloc_settings_are_left_alone(users_own):
    value = "glibc.malloc.trim_threshold=131072" if users_own == "GLIBC_TUNABLES" else "131072"
    assert later_steps(**{users_own: value})[0] is False
