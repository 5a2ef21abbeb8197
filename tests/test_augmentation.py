"""Augmentation (none, patch, keras, strong, overrides) and normalisation modes."""

import pytest
import torch
from conftest import CATS_DOGS, need
from hydra import compose, initialize_config_dir
from PIL import Image

from cnnexp.runner.compose import conf_dir
from cnnexp.data.images import read_image
from cnnexp.data.transforms import Augmentation, Normalizer, Pipeline
from cnnexp.schemas import typed
from cnnexp.schemas.datasets import MAX_PIXELS
from cnnexp.utils.errors import UserError


def augmentation_cfg(*overrides):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        return compose("train", overrides=list(overrides)).augmentation


def photo_batch(n=4, size=(48, 64)):
    """n copies of one real photo, uint8 n x 3 x H x W."""
    photo = sorted((need(CATS_DOGS, "the cats-and-dogs photos") / "train" / "cats").iterdir())[0]
    image = torch.from_numpy(read_image(photo, 3, size, "aspect", MAX_PIXELS)).permute(2, 0, 1)
    return image.expand(n, -1, -1, -1).contiguous()


def test_none_is_the_identity():
    x = photo_batch()
    pipeline = Pipeline(Augmentation(augmentation_cfg(), x.shape[1:]), Normalizer("none", [0] * 3, [1] * 3))
    assert torch.equal(pipeline(x, train=True, generator=torch.Generator()), x.float())
    assert torch.equal(pipeline(x, train=False), x.float())


@pytest.mark.parametrize("choice", ["keras", "strong"])
def test_identical_images_come_out_different(choice):
    x = photo_batch(n=6)
    augmentation = Augmentation(augmentation_cfg(f"augmentation={choice}"), x.shape[1:])
    out = augmentation.train(x.float(), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(1, len(out)):
        assert (out[i] - out[0]).abs().mean() > 1.0, i
    again = augmentation.train(x.float(), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the same seed draws the same parameters
    assert torch.equal(augmentation.eval(x.float()), x.float())


def test_keras_with_a_patch_by_override():
    x = photo_batch(n=3)
    augmentation = Augmentation(augmentation_cfg("augmentation=keras", "augmentation.crop_size=[40,40]"), x.shape[1:])
    assert augmentation.out_shape == (3, 40, 40)
    assert augmentation.train(x.float(), torch.Generator().manual_seed(1)).shape == (3, 3, 40, 40)
    assert torch.equal(augmentation.eval(x.float()), x.float()[:, :, 4:44, 12:52])  # the centre patch


def test_patch_takes_the_affine_keys():
    cfg = augmentation_cfg("augmentation=patch", "augmentation.crop_size=[40,40]", "augmentation.rotation=10")
    assert Augmentation(cfg, (3, 48, 64)).warps


def test_warp_without_ranges_is_an_exact_patch_or_mirror():
    """The affine matrices place patch and mirror exactly: with no random warp, grid_sample copies pixels."""
    x = torch.rand(5, 3, 20, 30) * 255
    cfg = augmentation_cfg("augmentation.crop_size=[12,16]", "augmentation.flip=true")
    out = Augmentation(cfg, (3, 20, 30)).warp(x, torch.Generator().manual_seed(0))
    for image, source in zip(out, x):
        windows = [source[:, t : t + 12, left : left + 16] for t in range(9) for left in range(15)]
        assert any(torch.allclose(image, w, atol=1e-3) or torch.allclose(image, w.flip(-1), atol=1e-3)
                   for w in windows)


def test_rotation_keeps_the_centre_and_fill_nearest_has_no_black():
    x = photo_batch(n=8, size=(32, 32)).float()
    cfg = augmentation_cfg("augmentation=keras", "augmentation.zoom=0", "augmentation.width_shift=0",
                           "augmentation.height_shift=0", "augmentation.rotation=40")
    out = Augmentation(cfg, (3, 32, 32)).train(x, torch.Generator().manual_seed(2))
    assert torch.allclose(out[:, :, 15:17, 15:17].mean((2, 3)), x[:, :, 15:17, 15:17].mean((2, 3)), atol=25)
    assert out.min() >= x.min() - 1e-3  # nearest fill repeats edge pixels instead of padding with zeros


@pytest.mark.parametrize("override, message", [
    ("augmentation.zoom=1.5", "zoom=1.5 must be a number in"), ("augmentation.fill=wrap", "fill=wrap is not one of"),
    ("augmentation.rotation=-5", "rotation=-5.0 must be"), ("augmentation.crop_size=[0,9]", r"crop_size=\[0, 9\] must"),
])
def test_bad_augmentation_values_are_refused_by_the_schema(override, message):
    """Checked when the composed config becomes typed, before any data is read."""
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        cfg = compose("train", overrides=["augmentation=keras", override])
    with pytest.raises(UserError, match=message):
        typed(cfg)


def test_a_crop_larger_than_the_images_is_refused():
    """Whether a crop fits is known once the images' size is."""
    with pytest.raises(UserError, match="must fit"):
        Augmentation(augmentation_cfg("augmentation=keras", "augmentation.crop_size=[99,99]"), (3, 48, 64))


def test_normalisation_modes_use_training_statistics():
    train = torch.stack([torch.full((3, 4, 4), v, dtype=torch.uint8) for v in (10, 30)])
    mean = Normalizer.fit("mean", train)
    assert mean.mean == pytest.approx([20.0] * 3) and mean.std == pytest.approx([10.0] * 3)
    x = torch.full((1, 3, 2, 2), 50.0)
    assert torch.allclose(mean(x), torch.full_like(x, 30.0))  # the tutorial's MeanPreprocessor: 0..255 units
    assert torch.allclose(Normalizer.fit("standardize", train)(x), torch.full_like(x, 3.0))
    assert torch.allclose(Normalizer.fit("scale", train)(x), x / 255)
    stored = Normalizer.fit("mean", train, ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]))
    assert stored.mean == [1.0, 2.0, 3.0]
    with pytest.raises(UserError, match="normalize=unit"):
        Normalizer("unit", [0], [1])


def test_grey_images_augment_too(tmp_path):
    path = tmp_path / "grey.pgm"
    Image.open(sorted((need(CATS_DOGS, "the cats-and-dogs photos") / "train" / "dogs").iterdir())[0]).convert("L").save(path)
    x = torch.from_numpy(read_image(path, 1, (32, 32), "simple", MAX_PIXELS)).permute(2, 0, 1)[None].expand(2, -1, -1, -1).float()
    out = Augmentation(augmentation_cfg("augmentation=strong"), (1, 32, 32)).train(x, torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 32, 32) and not torch.equal(out[0], out[1])


def test_the_schema_holds_the_augmentation_defaults_and_none_yaml_writes_the_same():
    """A key's default lives in AugmentationSchema; conf/augmentation/none.yaml (the same values, with
    their comments) is held to it, and a config lacking keys (an old run's, a features file's) gets them."""
    import dataclasses

    from omegaconf import OmegaConf

    from cnnexp.schemas import AugmentationSchema, upgrade

    assert OmegaConf.to_container(OmegaConf.load(conf_dir() / "augmentation" / "none.yaml")) == \
        dataclasses.asdict(AugmentationSchema())
    assert Augmentation(AugmentationSchema(), (3, 48, 64)).describe() == "none (whole image)"
    old = upgrade({"dataset": {"name": "olivetti"}, "augmentation": {"name": "patch", "crop_size": [40, 40]}})
    described = Augmentation(old.augmentation, (3, 48, 64)).describe()
    assert described == "random 40x40 patch" and old.augmentation.fill == "nearest"
