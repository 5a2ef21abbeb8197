"""cnnexp viz: Grad-CAM finds the evidence (bright squares; a small CNN and torchvision's resnet18 with
in-place ReLU), is exact on frozen weights and leaves the model as found; gradient ascent raises the
chosen channels; curves.png kept current (at most every few seconds, by a low-priority process started
when a picture is first due; always at the end); the command's pictures, TensorBoard and errors."""

import copy
import hashlib
import io
import json
import os
import re
import select
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from rich.console import Console
from torch import nn

from cnnexp.cli import main
from cnnexp.runner.compose import compose_config
from cnnexp.data import create_dataset
from cnnexp.engine import loggers
from cnnexp.engine.curves import draw_curves
from cnnexp.engine.loggers import CurvesPlot
from cnnexp.engine.curves import DPI, SIZE_INCHES
from cnnexp.engine.loggers import ConsoleReporter
from cnnexp.engine.assemble import assemble_training
from cnnexp.engine.trainer import Trainer
from cnnexp.models import create_model, list_models
from cnnexp.viz.common import LayerOutput, conv_layers, feature_maps, find_layers, last_spatial_map
from cnnexp.viz.curves import run_labels
from cnnexp.viz.filters import AscentSettings, gradient_ascent
from cnnexp.viz.gradcam import grad_cam

TINY = ("model.nkerns=[4,8]", "model.hidden=32", "optimizer.lr=0.1", "trainer.batch_size=20", "device=cpu")
CURVES_SIZE = (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))
RED = torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None]


# ---- the bright-square data: the class is decided only by a small square at a random place ------
def bright_squares(n: int, size: int, side: int, seed: int):
    """RGB noise; class 1 has a bright red side x side square at a random position, class 0 has none.
    Returns float images in 0..1, labels, and the squares' (top, left) (drawn for every image)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 2, (n,), generator=generator)
    corners = torch.randint(0, size - side + 1, (n, 2), generator=generator)
    for image, label, (top, left) in zip(images, labels, corners.tolist()):
        if label:
            image[:, top:top + side, left:left + side] = RED
    return images.float() / 255, labels, corners


def small_cnn() -> nn.Module:
    """Three 3x3 convs with in-place ReLUs, two 2x2 max-pools, global average pooling: the last conv's
    map (index 7) has a quarter of the input's resolution."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))


def fit(model: nn.Module, images, labels, steps: int, lr: float, batch: int = 32) -> None:
    """A plain Adam loop on random batches."""
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def accuracy(model: nn.Module, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def peak_inside_square(maps: torch.Tensor, corners: torch.Tensor, side: int) -> torch.Tensor:
    """Per image: does the Grad-CAM maximum fall inside the square?"""
    width = maps.shape[-1]
    peak = maps.flatten(1).argmax(1)
    rows, cols = peak // width, peak % width
    top, left = corners[:, 0], corners[:, 1]
    return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)


def check_points_at_squares(model, layer, size, side, train_steps, lr, capsys, name) -> None:
    """Train to > 95 % test accuracy; on the test images with a square, the Grad-CAM maximum of the
    predicted class must fall inside it for at least 90 %."""
    images, labels, _ = bright_squares(1000, size, side, seed=0)
    test_images, test_labels, corners = bright_squares(200, size, side, seed=5)
    fit(model, images, labels, train_steps, lr)
    test_accuracy = accuracy(model, test_images, test_labels)
    with_square = test_labels == 1
    maps = grad_cam(model, test_images[with_square], layer).maps
    inside = peak_inside_square(maps, corners[with_square], side).float().mean().item()
    with capsys.disabled():
        print(f"\n{name}: test accuracy {100 * test_accuracy:.1f} %, Grad-CAM maximum inside the square for "
              f"{100 * inside:.1f} % of the {int(with_square.sum())} test images with a square")
    assert test_accuracy > 0.95
    assert inside >= 0.90


def test_gradcam_points_at_the_square_small_cnn(capsys):
    torch.manual_seed(0)
    model = small_cnn()
    check_points_at_squares(model, model[7], size=24, side=6, train_steps=60, lr=3e-3, capsys=capsys,
                            name="small CNN (in-place ReLU), 24x24, square 6x6, last conv block")


@pytest.mark.slow
def test_gradcam_points_at_the_square_resnet18(capsys):
    """torchvision's resnet18 (in-place ReLUs); on 40x40 inputs layer4 is 2x2, so the map is taken at
    layer1 (10x10, the output of a BasicBlock's in-place ReLU)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2)
    check_points_at_squares(model, model.layer1, size=40, side=10, train_steps=60, lr=1e-3, capsys=capsys,
                            name="resnet18, 40x40, square 10x10, layer1")


# ---- Grad-CAM on resnet18: in-place ReLU, frozen weights, the model left as found ---------------
def textbook_cam(model: nn.Module, inputs, layer_name: str, classes) -> torch.Tensor:
    """Grad-CAM the usual way on a copy with every ReLU made out-of-place and every weight trainable:
    keep the layer's output, backpropagate the class score, weight channels by their mean gradient."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    for param in model.parameters():
        param.requires_grad_(True)
    kept = {}

    def keep(module, inputs, output):
        output.retain_grad()
        kept["output"] = output

    dict(model.named_modules())[layer_name].register_forward_hook(keep)
    model(inputs).gather(1, classes[:, None]).sum().backward()
    activations, grads = kept["output"], kept["output"].grad
    cam = F.relu((grads.mean((2, 3), keepdim=True) * activations).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return (cam / cam.flatten(1).max(1).values[:, None, None]).detach()


@pytest.mark.parametrize("layer_name", ["layer2.1.bn1", "layer3"])
def test_gradcam_resnet18_inplace_relu_and_frozen_weights_match_the_textbook(layer_name):
    """layer2.1.bn1's output is rectified in place right after the layer; layer3 ends in an in-place
    ReLU. The weights are frozen (no gradient anywhere without the CAM's own leaf) and the model is in
    training mode: the maps equal the textbook computation, and the model comes back unchanged."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    model.fc.weight.data.normal_(0, 0.5)  # a random head with distinct classes
    for param in model.parameters():
        param.requires_grad_(False)
    model.layer4.requires_grad_(True)  # a mix of frozen and trainable, to see both restored
    model.train()
    model.layer1.eval()  # and a mix of modes
    modes = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = torch.rand(3, 3, 64, 64)
    layer = dict(model.named_modules())[layer_name]

    result = grad_cam(model, inputs, layer)

    expected = textbook_cam(model, inputs, layer_name, result.classes)
    assert torch.allclose(result.maps, expected, atol=1e-5)
    assert result.maps.shape == (3, 64, 64) and result.maps.amax((1, 2)).allclose(torch.ones(3))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN statistics untouched


def test_gradcam_named_class_and_trained_small_cnn_frozen():
    """target classes given explicitly; freezing a trained model changes nothing in its maps."""
    images, labels, _ = bright_squares(300, 24, 5, seed=0)
    torch.manual_seed(0)
    model = small_cnn()
    fit(model, images, labels, 10, 3e-3)
    before = grad_cam(model, images[:8], model[7], labels[:8])
    model.requires_grad_(False)
    after = grad_cam(model, images[:8], model[7], labels[:8])
    assert torch.equal(before.classes, labels[:8]) and torch.allclose(before.maps, after.maps)
    assert not any(p.requires_grad for p in model.parameters()) and model.training  # as fit left it


def test_a_long_gradcam_title_is_wrapped_inside_the_picture():
    """The title names the image, class, layer, model and dataset: longer than the figure is wide."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cnnexp.viz.gradcam import gradcam_figure

    title = "test-3: Grad-CAM of 'person_03' at features (Sequential, 50x11x8 maps) (lenet on olivetti)"
    figure = gradcam_figure(torch.zeros(1, 57, 47, dtype=torch.uint8), torch.rand(57, 47), title, "1. person_03 0.96")
    renderer = FigureCanvasAgg(figure).get_renderer()
    shown, whole = figure._suptitle.get_window_extent(renderer), figure.bbox
    assert figure._suptitle.get_text().replace("\n", " ") == title
    assert whole.x0 <= shown.x0 and shown.x1 <= whole.x1 and shown.y1 <= whole.y1
    assert all(shown.y0 >= ax.get_window_extent(renderer).y1 for ax in figure.axes)  # above the pictures


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_has_maps_and_gradcam(name):
    """Default layers exist and Grad-CAM gives one finite 0..1 map per image, for every model family."""
    shape = (3, 64, 64)
    model = create_model(name, shape, 4)
    maps = feature_maps(model, shape, "cpu")
    assert conv_layers(model) and set(conv_layers(model)) <= set(maps)
    layer_name = last_spatial_map(maps)
    result = grad_cam(model, torch.rand(2, *shape), find_layers(model, [layer_name], maps)[layer_name])
    assert result.maps.shape == (2, 64, 64) and torch.isfinite(result.maps).all()
    assert result.maps.min() >= 0 and result.maps.max() <= 1


# ---- gradient ascent --------------------------------------------------------------------------
def noise_spread(model, layer_name, channels, shape) -> torch.Tensor:
    """How much each channel's mean activation varies between starting-noise images (std over 32)."""
    twin = copy.deepcopy(model).eval()
    noise = (128 + 20 * torch.randn(32, *shape)).clamp(0, 255)
    with torch.no_grad(), LayerOutput(dict(twin.named_modules())[layer_name]) as caught:
        twin(noise / 255.0)
    return caught.value[:, channels].flatten(2).mean(2).std(0)


def test_gradient_ascent_raises_the_channels_and_leaves_the_model_as_found():
    torch.manual_seed(0)
    model = create_model("lenet", (1, 40, 40), 5, nkerns=[6, 12], hidden=16, dropout=0.5)
    model.train()
    model.features[0].weight.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    channels = [0, 3, 5, 11]

    ascent = gradient_ascent(model, model.features[3], channels, (1, 40, 40), lambda x: x / 255.0, "cpu",
                             AscentSettings(steps=30, lr=4.0, seed=1))

    gain = ascent.end - ascent.start
    spread = noise_spread(model, "features.3", channels, (1, 40, 40))
    assert (gain > 20 * spread).all(), (gain, spread)  # far beyond what another noise image would give
    assert ascent.patterns.shape == (4, 1, 40, 40)
    assert ascent.patterns.min() >= 0 and ascent.patterns.max() <= 255
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags and all(p.grad is None for p in model.parameters())


# ---- curves.png -------------------------------------------------------------------------------
class WatchCurves(ConsoleReporter):
    """After each evaluation row, wait for the plot and read curves.png back."""

    def __init__(self, path):
        super().__init__(Console(file=io.StringIO()))
        self.path, self.trainer, self.seen = path, None, []

    def eval_row(self, row, improved):
        super().eval_row(row, improved)
        self.trainer.loggers.curves.wait()
        with Image.open(self.path) as image:
            image.verify()
        with Image.open(self.path) as image:
            self.seen.append((image.format, image.size, hashlib.sha256(self.path.read_bytes()).hexdigest()))


def test_curves_png_after_every_evaluation_when_evaluations_are_slower_than_the_interval(tmp_path, monkeypatch):
    monkeypatch.setattr(loggers, "REDRAW_SECONDS", 0.0)  # every evaluation comes after the interval
    cfg = compose_config("train", [*TINY, "trainer.epochs=3", "dataset.limit=60"])
    data = create_dataset(cfg.dataset, 0).limit(60)
    watcher = WatchCurves(tmp_path / "curves.png")
    trainer = Trainer(assemble_training(cfg, data), tmp_path, watcher)
    watcher.trainer = trainer
    trainer.fit()
    assert [(fmt, size) for fmt, size, _ in watcher.seen] == [("PNG", CURVES_SIZE)] * 3
    assert len({digest for _, _, digest in watcher.seen}) == 3  # rewritten at each evaluation
    assert trainer.loggers.curves.worker.poll() == 0  # the drawing process ended cleanly
    assert sorted(p.name for p in tmp_path.glob(".*")) == []  # no temporary file left


def history_rows(n: int) -> list[dict]:
    return [{"epoch": e, "step": 8 * e, "train_loss": 3.0 / e, "val_loss": 3.5 / e, "val_error": 0.9 / e,
             "test_error": 0.9 / e if e % 2 else None, "lr": 0.05, "images_per_second": 500.0} for e in range(1, n + 1)]


def png_digest(path) -> str:
    with Image.open(path) as image:
        assert (image.format, image.size) == ("PNG", CURVES_SIZE)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_shorter_than_the_interval_starts_no_drawing_process_and_ends_with_its_picture(tmp_path):
    plot = CurvesPlot(tmp_path / "curves.png", "short run", interval=60.0)
    for n in (1, 2, 3):
        plot.update(history_rows(n))
    assert not (tmp_path / "curves.png").exists() and plot.worker is None  # nothing drawn while training
    plot.close()
    assert png_digest(tmp_path / "curves.png")
    reference = tmp_path / "reference.png"
    draw_curves({"": history_rows(3)}, reference, "short run")
    assert (tmp_path / "curves.png").read_bytes() == reference.read_bytes()  # all three rows


def test_the_first_picture_comes_after_the_interval_without_another_evaluation_from_a_niced_process(tmp_path):
    path = tmp_path / "curves.png"
    plot = CurvesPlot(path, "watched run", interval=0.5)
    plot.update(history_rows(1))  # the only evaluation for a long time (a long epoch follows)
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert png_digest(path) and plot.worker is not None
    assert os.getpriority(os.PRIO_PROCESS, plot.worker.pid) == min(os.getpriority(os.PRIO_PROCESS, 0)
                                                                   + loggers.NICENESS, 19)
    first = png_digest(path)
    plot.update(history_rows(2))
    plot.close()
    assert plot.worker.poll() == 0 and png_digest(path) != first  # the end is drawn


def read_answer(process, timeout: float) -> str | None:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline().strip() if ready else None


def test_the_drawing_process_redraws_at_most_every_interval_and_draws_the_end_at_once(tmp_path):
    path = tmp_path / "curves.png"
    process = subprocess.Popen([sys.executable, "-m", "cnnexp.engine.curves", str(path), "a run", "30"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rows = history_rows(3)

    def send(message):
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()

    send({"seq": 1, "rows": rows[:1]})
    assert read_answer(process, 60) == "1"  # the first picture at once
    send({"seq": 2, "rows": rows[1:2]})
    send({"seq": 3, "rows": rows[2:]})
    assert read_answer(process, 1.5) is None  # within the interval: nothing is drawn
    ended = time.monotonic()
    send({"end": True})
    assert read_answer(process, 60) == "3"  # both waiting updates in one picture, drawn at the end
    assert process.wait(timeout=60) == 0 and time.monotonic() - ended < 20  # not held back by the interval
    reference = tmp_path / "reference.png"  # drawn in a fresh process too: other tests' matplotlib state stays out
    subprocess.run([sys.executable, "-c", "import json, sys, pathlib; from cnnexp.engine.curves import draw_curves; "
                    "draw_curves({'': json.loads(sys.argv[1])}, pathlib.Path(sys.argv[2]), 'a run')", json.dumps(rows),
                    str(reference)], check=True, timeout=120)
    assert path.read_bytes() == reference.read_bytes()


# ---- the command ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "faces"
    assert main(["train", *TINY, "trainer.epochs=2", "augmentation=patch", f"hydra.run.dir={folder}"]) == 0
    return folder


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_viz_curves_of_one_and_several_runs(cnnexp, run, tmp_path_factory):
    assert png_size(run / "curves.png") == CURVES_SIZE
    result = cnnexp("viz", "curves", f"run={run}")
    assert result.code == 0, result.err
    assert png_size(run / "viz" / "curves.png") == CURVES_SIZE
    other = tmp_path_factory.mktemp("runs") / "other"
    assert cnnexp("train", *TINY, "trainer.epochs=1", "optimizer.lr=0.05", "augmentation=patch",
                  f"hydra.run.dir={other}").code == 0
    result = cnnexp("viz", "curves", f"run={run},{other}", "out=both")
    assert result.code == 0, result.err
    assert result.out.strip() == "wrote both/curves.png" and png_size("both/curves.png") == CURVES_SIZE
    assert run_labels([run, other]) == ["optimizer.lr=0.1, trainer.epochs=2", "optimizer.lr=0.05, trainer.epochs=1"]


def test_viz_activations_one_grid_per_conv_layer(cnnexp, run):
    result = cnnexp("viz", "activations", f"run={run}", "image=olivetti:12", "out=pictures")
    assert result.code == 0, result.err
    assert result.out.split() == ["wrote", "pictures/activations-olivetti-12-features.0.png",
                                  "wrote", "pictures/activations-olivetti-12-features.3.png"]
    result = cnnexp("viz", "activations", f"run={run}", "image=test:3", "layers=features.2,features.5")
    assert result.code == 0, result.err
    assert {p.name for p in (run / "viz").glob("activations-test-3-*")} == {
        "activations-test-3-features.2.png", "activations-test-3-features.5.png"}


def test_viz_filters_kernels_and_patterns(cnnexp, run):
    result = cnnexp("viz", "filters", f"run={run}", "channels=[0,2,7]", "steps=5", "out=f")
    assert result.code == 0, result.err
    assert png_size("f/kernels-features.0.png") and png_size("f/patterns-features.3.png")
    assert "mean activation" in result.out


def test_viz_gradcam_files_and_tensorboard(cnnexp, run, workdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Image.new("L", (47, 57), 90).save(workdir / "grey.png")
    result = cnnexp("viz", "gradcam", f"run={run}", "image=grey.png", "target=person_07", "tensorboard=true")
    assert result.code == 0, result.err
    assert result.out.startswith(f"wrote {run / 'viz' / 'gradcam-grey-person_07.png'}  1. person_")
    assert png_size(run / "viz" / "gradcam-grey-person_07.png")
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    assert "viz/gradcam/grey-person_07" in events.Tags()["images"]


def test_viz_gradcam_names_the_explained_class_and_the_layer(cnnexp, run, workdir, monkeypatch):
    """The predicted class's picture and a target class's are two files; each title names its class and
    the layer by its module name and kind, not a bare index."""
    import cnnexp.viz.gradcam as gradcam_module

    titles = []
    drawn = gradcam_module.gradcam_figure
    monkeypatch.setattr(gradcam_module, "gradcam_figure", lambda *a, **k: titles.append(a[2]) or drawn(*a, **k))
    Image.new("L", (47, 57), 90).save(workdir / "grey.png")
    top = cnnexp("viz", "gradcam", f"run={run}", "image=grey.png")
    predicted = top.out.split("1. ")[1].split()[0]
    other = "person_00" if predicted != "person_00" else "person_01"
    assert cnnexp("viz", "gradcam", f"run={run}", "image=grey.png", f"target={other}").code == 0
    assert {p.name for p in (run / "viz").glob("gradcam-grey-*.png")} >= {f"gradcam-grey-{other}.png",
                                                                         f"gradcam-grey-{predicted}.png"}
    assert f"Grad-CAM of '{predicted}' at " in titles[0] and f"Grad-CAM of '{other}' at " in titles[1]
    assert re.search(r" at features(\.\d+)? \(\w+, \d+x\d+x\d+ maps\) ", titles[0]), titles[0]


def test_gradcam_file_and_layer_names():
    from torch import nn

    from cnnexp.commands.viz import file_part, layer_description

    assert file_part("(38, 43)") == "38_43" and file_part("person_07") == "person_07" and file_part("/") == "class"
    assert layer_description("15", nn.ReLU(), (256, 6, 6)) == "layer 15 (ReLU, 256x6x6 maps)"
    assert layer_description("features.5", nn.Tanh(), (50, 11, 8)) == "features.5 (Tanh, 50x11x8 maps)"


def test_viz_help_and_cfg(cnnexp):
    result = cnnexp("viz", "--help")
    assert result.code == 0 and all(name in result.out for name in ("curves", "activations", "filters", "gradcam"))
    result = cnnexp("viz", "gradcam", "--help")
    assert result.code == 0 and "Grad-CAM" in result.out and "\ntarget=top\n    top (each image" in result.out
    result = cnnexp("viz", "filters", "--cfg", "job", "channels=1,2")
    assert result.code == 0 and "picture: filters" in result.out and "- '1'" in result.out


@pytest.mark.parametrize("args, message", [
    (("gradcam", "image=test:0", "layer=nope"),
     "error: unknown layer 'nope'; layers with a feature map: features.0, features.1, features.2, features.3"),
    (("gradcam", "image=missing.png"), "error: image=missing.png does not exist"),
    (("gradcam", "image=bad.png"), "error: cannot decode bad.png as an image"),
    (("activations", "image=olivetti:400"), "error: image=olivetti:400 is out of range"),
    (("filters", "channels=[8]"), "error: channels: 8 is not a channel of this layer; use 0 to 7"),
    (("gradcam", "image=test:0", "target=nobody"), "error: target=nobody is not a class of this run"),
    (("paint",), "error: unknown picture 'paint'; choose one of: curves, activations, filters, gradcam"),
])
def test_viz_errors_are_one_line(cnnexp, run, workdir, args, message):
    (workdir / "bad.png").write_text("not an image")
    result = cnnexp("viz", args[0], f"run={run}", *args[1:])
    assert result.code == 2
    assert result.err.startswith(message) and result.err.count("\n") == 1, result.err


def test_viz_run_without_checkpoint(cnnexp, run, workdir):
    bare = workdir / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text((run / "config.yaml").read_text())
    result = cnnexp("viz", "gradcam", f"run={bare}", "image=test:0")
    assert result.code == 2 and result.err.startswith("error: no best checkpoint in the run folder"), result.err
    assert list(bare.iterdir()) == [bare / "config.yaml"]
