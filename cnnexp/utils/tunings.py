"""Process-wide tunings: settings that change the whole process, not one run, so the command line alone
applies them (the `cnnexp` program and the Hydra jobs it runs, a launcher's worker processes included).
Importing cnnexp or calling its library (`cnnexp.train` in a notebook) leaves the process as it was.

- malloc (`job_start`): glibc told to keep freed memory for the next step instead of unmapping it and
  faulting it in again (utils/allocator.py: 0.96x the MNIST run's time; CNNEXP_MALLOC_DEFAULTS=1 or the
  user's own malloc settings leave it alone).
- TensorBoard's record checksum (`training_start`): tensorboard's RecordWriter computes CRC-32C in pure
  Python without TensorFlow (about 0.25 s a megabyte, 1-2 s of CPU for an AlexNet-sized input grid);
  its module-level `masked_crc32c` is replaced by one computed in C. Replacing another library's
  function is process-wide, hence here.
- garbage collector (`before_exit`): `gc.freeze()` before the interpreter shuts down, so its final
  collections do not walk the millions of objects torch made (0.6-0.8 s of every command).
"""

import gc

from cnnexp.utils.allocator import keep_freed_memory


def masked_crc32c(data: bytes) -> int:
    """The checksum of an event record (CRC-32C, masked as TFRecord files mask it), computed in C."""
    import crc32c

    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def job_start() -> bool:
    """At the start of each command's job; whether malloc was tuned."""
    return keep_freed_memory()


def training_start() -> None:
    """Before a command trains: tensorboard's RecordWriter checksums in C."""
    from tensorboard.summary.writer import record_writer

    record_writer.masked_crc32c = masked_crc32c  # the name tensorboard's RecordWriter calls


def before_exit() -> None:
    """As the `cnnexp` program exits: nothing left for the garbage collector's final passes to walk."""
    gc.freeze()
