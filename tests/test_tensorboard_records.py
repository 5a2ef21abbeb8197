"""TensorBoard event files written with cnnexp's C checksum are the files tensorboard's own reader accepts."""

import os

import torch
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_crc
from tensorboard.compat.proto.event_pb2 import Event

from cnnexp.engine.loggers import TensorBoardLogger
from cnnexp.utils.tunings import masked_crc32c, training_start


def test_checksum_is_tensorboards():
    for data in (b"", b"a", bytes(range(256)), os.urandom(4099)):
        assert masked_crc32c(data) == tensorboard_crc(data)


def test_an_input_grid_reads_back_with_checked_records(tmp_path):
    """A grid of noise (PNG cannot shrink it: MBs, the case the C checksum is for) and a scalar; tensorboard's
    reader checks every record's checksum and raises DataLossError on a wrong one."""
    training_start()  # what `cnnexp train` does: the records checksummed in C
    logger = TensorBoardLogger(tmp_path)
    images = torch.randint(0, 256, (16, 3, 227, 227), generator=torch.Generator().manual_seed(0)).float()
    logger.image_grid("inputs/train", images)
    logger.scalars({"train/loss": 0.5}, 1)
    logger.close()
    [events_file] = tmp_path.glob("events.out.tfevents.*")
    reader, tags = PyRecordReader_New(str(events_file)), []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        tags += [value.tag for value in Event.FromString(reader.record()).summary.value]
    assert tags == ["inputs/train", "train/loss"]
    assert events_file.stat().st_size > 2**20
