"""The tutorial architectures (Levi-Hassner, AlexNet-BN, the video-faces CNN) layer by layer, and every
model of the zoo training a few steps on tiny inputs."""

import pytest
import torch
from torch import nn

from cnnexp.models import COMMON_MODEL_KEYS, create_model, list_models, model_kwargs
from cnnexp.utils.errors import UserError

ZOO = ["levi_hassner", "alexnet_bn", "face_cnn", "vgg16", "vgg16_bn", "resnet18", "resnet50"]


def layer_outputs(model: nn.Module, in_shape) -> list[tuple[str, tuple]]:
    """(layer type, output shape without the batch) of every leaf layer, in forward order."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, tuple(o.shape[1:]))))
             for m in model.modules() if not list(m.children())]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *in_shape))
    for hook in hooks:
        hook.remove()
    return seen


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_levi_hassner_layers_match_the_paper():
    model = create_model("levi_hassner", (3, 227, 227), 8)
    assert layer_outputs(model, (3, 227, 227)) == [
        ("Conv2d", (96, 56, 56)), ("ReLU", (96, 56, 56)), ("MaxPool2d", (96, 27, 27)), ("LocalResponseNorm", (96, 27, 27)),
        ("Conv2d", (256, 27, 27)), ("ReLU", (256, 27, 27)), ("MaxPool2d", (256, 13, 13)),
        ("LocalResponseNorm", (256, 13, 13)),
        ("Conv2d", (384, 13, 13)), ("ReLU", (384, 13, 13)), ("MaxPool2d", (384, 6, 6)),
        ("Linear", (512,)), ("ReLU", (512,)), ("Dropout", (512,)),
        ("Linear", (512,)), ("ReLU", (512,)), ("Dropout", (512,)),
        ("Linear", (8,)),
    ]
    convs = 96 * 3 * 7 * 7 + 96 + 256 * 96 * 5 * 5 + 256 + 384 * 256 * 3 * 3 + 384
    dense = 384 * 6 * 6 * 512 + 512 + 512 * 512 + 512 + 512 * 8 + 8
    assert n_params(model) == convs + dense
    lrn = model.features[3]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)
    assert model.features[0].stride == (4, 4)
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_levi_hassner_init_is_the_originals():
    torch.manual_seed(0)
    model = create_model("levi_hassner", (3, 227, 227), 2)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    dense = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert convs[1].weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert dense[0].weight.std().item() == pytest.approx(0.005, rel=0.02)
    assert [c.bias.unique().tolist() for c in convs] == [[0.0], [1.0], [0.0]]
    assert [d.bias.unique().tolist() for d in dense] == [[1.0], [1.0], [0.0]]


def test_alexnet_bn_layers_match_the_tutorial():
    model = create_model("alexnet_bn", (3, 227, 227), 2)
    block = lambda c, s: [("Conv2d", (c, s, s)), ("ReLU", (c, s, s)), ("BatchNorm2d", (c, s, s))]  # noqa: E731
    pool = lambda c, s: [("MaxPool2d", (c, s, s)), ("Dropout", (c, s, s))]  # noqa: E731
    dense = [("Linear", (4096,)), ("ReLU", (4096,)), ("BatchNorm1d", (4096,)), ("Dropout", (4096,))]
    assert layer_outputs(model, (3, 227, 227)) == (
        block(96, 57) + pool(96, 28) + block(256, 28) + pool(256, 13)
        + block(384, 13) + block(384, 13) + block(256, 13) + pool(256, 6) + dense + dense + [("Linear", (2,))]
    )
    convs = (96 * 3 * 121 + 96) + (256 * 96 * 25 + 256) + (384 * 256 * 9 + 384) + (384 * 384 * 9 + 384) \
        + (256 * 384 * 9 + 256)
    norms = 2 * (96 + 256 + 384 + 384 + 256) + 2 * 2 * 4096
    dense_params = (256 * 6 * 6 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 2 + 2)
    assert n_params(model) == convs + norms + dense_params == 58_308_674
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25, 0.25, 0.5, 0.5]


def test_face_cnn_layers_match_the_walkthrough():
    model = create_model("face_cnn", (3, 70, 50), 6)
    conv = lambda c, h, w, ph, pw: [("Conv2d", (c, h, w)), ("ReLU", (c, h, w)), ("MaxPool2d", (c, ph, pw))]  # noqa
    dense = lambda n: [("Linear", (n,)), ("ReLU", (n,)), ("Dropout", (n,))]  # noqa: E731
    assert layer_outputs(model, (3, 70, 50)) == (
        conv(32, 70, 50, 35, 25) + conv(64, 35, 25, 17, 12) + conv(128, 17, 12, 8, 6)
        + dense(8192) + dense(1024) + dense(128) + [("Linear", (60,)), ("ReLU", (60,)), ("Linear", (6,))]
    )
    convs = (32 * 3 * 25 + 32) + (64 * 32 * 25 + 64) + (128 * 64 * 25 + 128)
    dense_params = (128 * 8 * 6 * 8192 + 8192) + (8192 * 1024 + 1024) + (1024 * 128 + 128) + (128 * 60 + 60) + (60 * 6 + 6)
    assert n_params(model) == convs + dense_params


TINY = {  # model -> (input shape, small-head keys) for a quick training step
    "levi_hassner": ((3, 67, 67), {"dense": [32, 32]}),
    "alexnet_bn": ((3, 67, 67), {"dense": [32, 32]}),
    "face_cnn": ((3, 35, 25), {"dense": [32, 16]}),
    "vgg16": ((3, 32, 32), {"dense": [16]}),
    "vgg16_bn": ((1, 32, 32), {"dense": [16]}),
    "resnet18": ((1, 32, 32), {}),
    "resnet50": ((3, 32, 32), {"dropout": 0.2}),
}


@pytest.mark.parametrize("name", ZOO)
def test_every_model_trains_a_few_steps_on_tiny_inputs(name):
    in_shape, keys = TINY[name]
    torch.manual_seed(0)
    model = create_model(name, in_shape, 3, **keys)
    images, labels = torch.randn(4, *in_shape), torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    assert model(images).shape == (4, 3)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.grad is not None)


def test_zoo_is_registered_and_too_small_inputs_are_one_line_errors():
    assert set(ZOO) <= set(list_models())
    with pytest.raises(UserError, match="levi_hassner does not fit 32x32 inputs"):
        create_model("levi_hassner", (3, 32, 32), 2)
    with pytest.raises(UserError, match="vgg16 needs inputs of at least 32x32"):
        create_model("vgg16", (3, 16, 16), 2)
    with pytest.raises(UserError, match="model.convs=.*model.kernels="):
        create_model("alexnet_bn", (3, 227, 227), 2, convs=[96, 256], kernels=[11])


def test_factories_take_typed_keyword_only_keys_with_literal_defaults():
    """The config layer reads these signatures without importing torch: every key is keyword-only,
    annotated with a builtin type and has a literal default."""
    import ast
    import inspect

    from cnnexp.models import MODELS

    allowed = {"int", "float", "str", "bool", "list[int]", "list[float]", "list[str]", "str | None",
               "list[str] | None"}
    for name in ZOO:
        source = inspect.getsource(MODELS.get(name))
        func = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef))
        assert [a.arg for a in func.args.args] == ["in_shape", "num_classes"], name
        for arg, default in zip(func.args.kwonlyargs, func.args.kw_defaults):
            assert ast.unparse(arg.annotation) in allowed, (name, arg.arg)
            ast.literal_eval(default)  # raises for anything but a literal


def test_common_keys_never_reach_the_factories():
    cfg = {"name": "resnet18", "dropout": 0.1, **{k: default for k, (_, default, _) in COMMON_MODEL_KEYS.items()}}
    assert model_kwargs(cfg) == {"dropout": 0.1}


def test_face_cnn_trains_through_the_cli(cnnexp, workdir):
    result = cnnexp("train", "model=face_cnn", "model.dense=[32]", "model.bottleneck=8", "trainer.epochs=1",
                    "dataset.limit=40", "trainer.batch_size=20", "device.threads=1")
    assert result.code == 0, result.err
    assert "face_cnn" in result.out and "trainable of" in result.out


def test_olivetti_resized_feeds_levi_hassner():
    """experiment=faces_levi_hassner on Olivetti: dataset.size stretches the 57x47 faces (same split)."""
    from cnnexp.data import create_dataset
    from cnnexp.schemas.datasets import source_config

    cfg = source_config("olivetti", size=227)
    data = create_dataset(cfg, 0)
    assert data.image_shape == (1, 227, 227) and len(data.splits["train"]) == 320
    assert data.splits["test"].labels.tolist() == list(range(40))
    assert create_model("levi_hassner", data.image_shape, 40)(data.splits["test"].images[:2].float()).shape == (2, 40)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("size", [5, 4, 1])
def test_local_response_norm_is_torchs(memory_format, size):
    """Levi-Hassner's LRN (a 1x1 convolution over the channel window) gives torch's outputs and gradients."""
    from cnnexp.models._layers import LocalResponseNorm

    x = torch.randn(3, 12, 7, 5, generator=torch.Generator().manual_seed(0)) * 20
    ours, theirs = LocalResponseNorm(size, alpha=1e-2, beta=0.75, k=2.0), nn.LocalResponseNorm(size, 1e-2, 0.75, 2.0)
    inputs = [x.clone().contiguous(memory_format=memory_format).requires_grad_() for _ in range(2)]
    outputs = [layer(i) for layer, i in zip((ours, theirs), inputs)]
    for out, i in zip(outputs, inputs):
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(inputs[0].grad, inputs[1].grad)
    assert outputs[0].is_contiguous(memory_format=memory_format)
    assert ours.state_dict() == {}
