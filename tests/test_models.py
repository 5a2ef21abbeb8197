"""Model registry and the LeNet family: shapes from the dataset, the tutorial's init, clear errors."""

import math

import pytest
import torch

from cnnexp.utils.errors import UserError
from cnnexp.models import create_model, list_models


def test_registry_lists_models_and_rejects_unknown():
    assert {"lenet", "lenet5", "mnist_cnn"} <= set(list_models())
    with pytest.raises(UserError, match="unknown model 'nope'; choose one of: .*lenet"):
        create_model("nope", (1, 28, 28), 10)


@pytest.mark.parametrize("in_shape, classes", [((1, 57, 47), 40), ((1, 28, 28), 10), ((3, 64, 48), 2)])
@pytest.mark.parametrize("name", ["lenet", "lenet5", "mnist_cnn"])
def test_models_size_themselves_from_input(name, in_shape, classes):
    model = create_model(name, in_shape, classes)
    assert model(torch.zeros(3, *in_shape)).shape == (3, classes)


def test_lenet_matches_the_olivetti_tutorial_shapes():
    model = create_model("lenet", (1, 57, 47), 40, nkerns=[20, 50], hidden=2000)
    # 57x47 -conv5-> 53x43 -pool2-> 26x21 -conv5-> 22x17 -pool2-> 11x8, times 50 kernels
    assert model.classifier[0].in_features == 50 * 11 * 8
    assert model.classifier[0].out_features == 2000


def test_theano_init_bounds_and_zero_softmax():
    model = create_model("lenet", (1, 28, 28), 10, nkerns=[20, 50], init="theano")
    conv1 = model.features[0]
    bound = math.sqrt(6.0 / (1 * 25 + 20 * 25 / 4))
    assert conv1.weight.abs().max() <= bound and conv1.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(conv1.bias) == 0
    assert torch.count_nonzero(model.classifier[-1].weight) == 0


def test_unknown_model_key_is_a_user_error():
    with pytest.raises(UserError, match="wrong config key"):
        create_model("lenet", (1, 28, 28), 10, nkernels=[1])
