"""Olivetti (embedded) and MNIST (local torchvision layout): sizes, order and labels."""

import numpy as np
import pytest
import torch
from conftest import MNIST_ROOT, OLIVETTI_GIF, need
from PIL import Image

from cnnexp.data import create_dataset, list_datasets
from cnnexp.data.batches import TensorBatches
from cnnexp.schemas.datasets import source_config
from cnnexp.utils.errors import UserError


def olivetti_cfg(**kw):
    return source_config("olivetti", **kw)


def test_olivetti_tutorial_split():
    data = create_dataset(olivetti_cfg())
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [320, 40, 40]
    assert data.image_shape == (1, 57, 47) and data.num_classes == 40
    train = data.splits["train"]
    assert train.labels[:8].tolist() == [0] * 8 and train.labels[8:16].tolist() == [1] * 8
    assert data.splits["val"].labels.tolist() == list(range(40))


def test_olivetti_faces_are_cut_from_the_shared_gif():
    grid = np.asarray(Image.open(need(OLIVETTI_GIF, "the Olivetti GIF the package embeds")).convert("L"))
    data = create_dataset(olivetti_cfg())
    # person 1's 9th face (index 18) is the validation face of person 1: row 0, column 18 of the grid
    expected = grid[0:57, 18 * 47:19 * 47]
    assert torch.equal(data.splits["val"].images[1, 0], torch.from_numpy(expected.copy()))


def test_olivetti_split_sizes_are_configurable():
    data = create_dataset(olivetti_cfg(per_person=[6, 2, 2]))
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [240, 80, 80]
    with pytest.raises(UserError, match="summing to 10"):
        create_dataset(olivetti_cfg(per_person=[8, 1]))


def test_mnist_from_local_folder():
    cfg = source_config("mnist", root=str(need(MNIST_ROOT, "MNIST")), download=False)
    data = create_dataset(cfg)
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [50000, 10000, 10000]
    assert data.splits["train"].images.dtype == torch.uint8 and data.image_shape == (1, 28, 28)


def test_index_batches_cover_the_split_once():
    data = create_dataset(olivetti_cfg())
    batches = TensorBatches(data.splits["train"], batch_size=48, shuffle=True)
    order = batches.order(torch.Generator().manual_seed(0))
    labels = torch.cat([y for _, y in batches.iterate(order)])
    assert len(batches) == 7 and sorted(labels.tolist()) == sorted(data.splits["train"].labels.tolist())
    unshuffled = TensorBatches(data.splits["train"], batch_size=40, shuffle=False)
    first_images, first_labels = next(unshuffled.iterate(unshuffled.order()))
    assert first_labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8 + [3] * 8 + [4] * 8


def test_registry_lists_builtin_datasets():
    assert {"olivetti", "mnist"} <= set(list_datasets())
