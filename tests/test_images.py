"""Images as cameras and the web make them, one decoding path for every command.

The corpus is made here: EXIF orientations (JPEG, PNG, WebP, TIFF), 16-bit grey and colour, 32-bit
integer and float, CMYK and YCCK JPEGs, palettes, transparency, animations (GIF, WebP, APNG), the
netpbm family, a 1x1 and a 4000x8 image; and files to refuse: truncated, empty, text named .jpg,
another format, headers claiming 60000x60000 pixels and a real 144-megapixel PNG bomb. Each readable
case has a reference made with numpy (from the arrays written, or from the stored values read raw)
and is checked through the decoder, a dataset=folder training run, data show, features, predict,
viz and serve; each refused one gives its reason (a skipped file, one `error:` line, a 4xx JSON
answer with the server still answering).
"""

import contextlib
import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import h5py
import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from cnnexp.cli import main
from cnnexp.data import create_dataset
from cnnexp.inference.inputs import decode_upload, fit, load, prepare
from cnnexp.data.images import (IMAGE_SUFFIXES, FormatNotOpened, TooManyPixels, UnreadableImage, image_from_bytes,
                                open_image, read_image)
from cnnexp.schemas.datasets import MAX_PIXELS
from conftest import only_run
from test_serve import Server

H, W = 24, 40
Y, X = np.mgrid[0:H, 0:W]


def picture() -> np.ndarray:
    """H x W RGB: smooth gradients and two blocks, so a turn or a mirror changes it."""
    image = np.dstack([X * 255 // (W - 1), Y * 255 // (H - 1), 255 - X * 3]).astype(np.uint8)
    image[3:10, 4:14] = (250, 30, 40)
    image[14:21, 26:37] = (20, 60, 220)
    return image


PICTURE = picture()
WHITE = 255

# What a viewer shows for each EXIF orientation, from the stored pixels (EXIF 2.32, tag 274)
ORIENTED = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def stored(path: Path) -> np.ndarray:
    """The pixels as stored (no EXIF rotation, no compositing): the raw values a reference starts from."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


def stretched(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    return np.rint((values.astype(np.float64) - low) * 255 / (high - low)).astype(np.uint8)


def on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[:, :, None]
    return np.rint((rgb * a + WHITE * (255 - a)) / 255).astype(np.uint8)


def cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    c = cmyk.astype(np.float64)
    return np.rint((255 - c[:, :, :3]) * (255 - c[:, :, 3:]) / 255).astype(np.uint8)


def palette_rgb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(palette indices, palette as N x 3) of the first frame, read raw."""
    with Image.open(path) as image:
        return np.asarray(image), np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)


# ---- writers: each writes its case and returns the reference RGB (or None for a refusal) -----------
def exif_oriented(fmt: str, orientation: int, **options) -> Callable:
    def write(path: Path) -> np.ndarray:
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        if fmt == "TIFF":
            Image.fromarray(PICTURE).save(path, format=fmt, tiffinfo={ExifTags.Base.Orientation: orientation})
        else:
            Image.fromarray(PICTURE).save(path, format=fmt, exif=exif, **options)
        return ORIENTED[orientation](stored(path) if fmt == "JPEG" else PICTURE)  # (Pillow turns TIFFs itself)
    return write


def grey16_png(path: Path) -> np.ndarray:
    values = (X * 60000 // (W - 1) + Y * 200 + 37).astype(np.uint16)  # low bytes that are not copies of the high
    Image.fromarray(values).save(path)
    return grey3((values >> 8).astype(np.uint8))


def grey16_pgm(path: Path) -> np.ndarray:
    values = (Y * 2700 + X * 13 + 5).astype(np.uint16)
    Image.fromarray(values).save(path, format="PPM")
    return grey3((values >> 8).astype(np.uint8))


def rgb16_png(path: Path) -> np.ndarray:
    values = PICTURE.astype(np.uint16) * 256 + (X * 7 % 256)[:, :, None].astype(np.uint16)
    cv2.imwrite(str(path), np.ascontiguousarray(values[:, :, ::-1]))
    return PICTURE


def int32_tiff(path: Path) -> np.ndarray:
    values = (X * 100_000 - 1_000_000 + Y * 3).astype(np.int32)  # beyond 16 bits, negative too
    Image.fromarray(values).save(path)
    return grey3(stretched(values))


def float_tiff(path: Path) -> np.ndarray:
    values = (X / (W - 1) * 2.5 - 0.5 + Y * 0.01).astype(np.float32)
    Image.fromarray(values).save(path)
    return grey3(stretched(values))


def cmyk_jpeg(path: Path) -> np.ndarray:
    cmyk = np.dstack([255 - PICTURE, (Y * 5).astype(np.uint8)])
    Image.fromarray(cmyk, "CMYK").save(path, quality=95)
    with Image.open(path) as image:
        assert image.mode == "CMYK"
        return cmyk_to_rgb(np.asarray(image))


def ycck_jpeg(path: Path) -> np.ndarray:
    """A 4-component JPEG whose Adobe marker says YCCK (transform 2): the first three components hold
    Y, Cb, Cr of (C, M, Y), the fourth K; libjpeg gives CMYK back."""
    cmyk = np.dstack([255 - PICTURE, (Y * 5).astype(np.uint8)]).astype(np.float64)
    c, m, y = cmyk[:, :, 0], cmyk[:, :, 1], cmyk[:, :, 2]
    ycc = np.dstack([0.299 * c + 0.587 * m + 0.114 * y,
                     128 - 0.168736 * c - 0.331264 * m + 0.5 * y,
                     128 + 0.5 * c - 0.418688 * m - 0.081312 * y])
    components = np.dstack([255 - np.clip(np.rint(ycc), 0, 255), cmyk[:, :, 3]]).astype(np.uint8)  # Pillow writes CMYK inverted
    buffer = io.BytesIO()
    Image.fromarray(components, "CMYK").save(buffer, format="JPEG", quality=100)
    data = bytearray(buffer.getvalue())
    adobe = data.index(b"Adobe")
    data[adobe + 11] = 2  # the APP14 transform flag: YCCK
    path.write_bytes(bytes(data))
    with Image.open(path) as image:
        decoded = np.asarray(image)
    assert np.abs(decoded.astype(int) - cmyk).mean() < 3  # libjpeg did turn YCCK back into these CMYK values
    return cmyk_to_rgb(decoded)


def palette_gif(path: Path) -> np.ndarray:
    Image.fromarray(PICTURE).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path)
    indices, palette = palette_rgb(path)
    return palette[indices]


def palette_transparent_png(path: Path) -> np.ndarray:
    indices = ((X // 5 + Y // 6) % 4).astype(np.uint8)
    palette = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200], [0, 0, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.flatten().tolist())
    image.save(path, transparency=3)  # index 3: black under it, transparent
    reference = palette[indices]
    reference[indices == 3] = WHITE
    return reference


def rgba_png(path: Path) -> np.ndarray:
    alpha = (X * 255 // (W - 1)).astype(np.uint8)
    Image.fromarray(np.dstack([PICTURE, alpha])).save(path)
    return on_white(PICTURE, alpha)


def grey_alpha_png(path: Path) -> np.ndarray:
    grey, alpha = PICTURE[:, :, 0], (Y * 255 // (H - 1)).astype(np.uint8)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(path)
    return grey3(on_white(grey[:, :, None], alpha)[:, :, 0])


def animated(fmt: str, **options) -> Callable:
    """Three frames; the first is PICTURE."""
    def write(path: Path) -> np.ndarray:
        frames = [Image.fromarray(a) for a in (PICTURE, 255 - PICTURE, np.full_like(PICTURE, 90))]
        frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
        with Image.open(path) as image:
            assert getattr(image, "n_frames", 1) == 3
        if fmt != "GIF":
            return PICTURE
        indices, palette = palette_rgb(path)
        assert np.abs(palette[indices].astype(int) - PICTURE).mean() < 8  # the first frame, quantised
        return palette[indices]
    return write


def plain(fmt: str, array: np.ndarray, mode: str | None = None) -> Callable:
    def write(path: Path) -> np.ndarray:
        Image.fromarray(array, mode).save(path, format=fmt)
        return grey3(array) if array.ndim == 2 else array
    return write


def pbm(path: Path) -> np.ndarray:
    bits = (X + Y) % 3 == 0
    Image.fromarray(bits).save(path, format="PPM")
    return grey3(np.where(bits, 255, 0).astype(np.uint8))


def pam(path: Path) -> np.ndarray:
    cv2.imwrite(str(path), np.ascontiguousarray(PICTURE[:, :, ::-1]), [cv2.IMWRITE_PAM_TUPLETYPE, cv2.IMWRITE_PAM_FORMAT_RGB])
    return PICTURE


def colour_pfm(path: Path) -> np.ndarray:
    values = PICTURE.astype(np.float32) / 100 - 0.3
    cv2.imwrite(str(path), np.ascontiguousarray(values[:, :, ::-1]))
    return stretched(values)


# ---- files to refuse -------------------------------------------------------------------------------
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int, height: int, rows: int | None = None) -> None:
    """A grey PNG of width x height zeros; with `rows`, only that many rows are stored (the header
    alone claims the size)."""
    packer = zlib.compressobj(9)
    row = bytes(width + 1)
    body = b"".join(packer.compress(row) for _ in range(height if rows is None else rows)) + packer.flush()
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b""))


def jpeg_claiming(path: Path, width: int, height: int) -> None:
    """An ordinary small JPEG whose frame header (SOF0) is changed to claim width x height."""
    buffer = io.BytesIO()
    Image.fromarray(PICTURE).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


def truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.tile(PICTURE, (4, 4, 1))).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def icon(path: Path) -> None:
    Image.fromarray(PICTURE).save(path, format="ICO")


@dataclass
class Case:
    name: str  # the file name (a number first: files sort in the order of CASES)
    write: Callable  # (path) -> reference RGB for a readable case; None for a refused one
    refusal: tuple | None = None  # (exception class, words of the reason, serve's status)


READABLE = [
    Case("01_exif6.jpg", exif_oriented("JPEG", 6, quality=95)),
    Case("02_exif3.png", exif_oriented("PNG", 3)),
    Case("03_exif8.webp", exif_oriented("WEBP", 8, lossless=True)),
    Case("04_exif5.tif", exif_oriented("TIFF", 5)),
    Case("05_grey16.png", grey16_png),
    Case("06_grey16.pgm", grey16_pgm),
    Case("07_rgb16.png", rgb16_png),
    Case("08_int32.tif", int32_tiff),
    Case("09_float.tif", float_tiff),
    Case("10_cmyk.jpg", cmyk_jpeg),
    Case("11_ycck.jpg", ycck_jpeg),
    Case("12_palette.gif", palette_gif),
    Case("13_palette_transparent.png", palette_transparent_png),
    Case("14_rgba.png", rgba_png),
    Case("15_grey_alpha.png", grey_alpha_png),
    Case("16_animated.gif", animated("GIF")),
    Case("17_animated.webp", animated("WEBP", lossless=True)),
    Case("18_animated.png", animated("PNG")),
    Case("19_picture.bmp", plain("BMP", PICTURE)),
    Case("20_grey.pgm", plain("PPM", PICTURE[:, :, 1])),
    Case("21_picture.ppm", plain("PPM", PICTURE)),
    Case("22_bits.pbm", pbm),
    Case("23_picture.pam", pam),
    Case("24_colour.pfm", colour_pfm),
    Case("25_one_pixel.png", plain("PNG", np.array([[[200, 100, 50]]], dtype=np.uint8))),
    Case("26_wide.png", plain("PNG", np.dstack([np.tile(np.arange(4000) % 256, (8, 1))] * 3).astype(np.uint8))),
    Case("27_grey.png", plain("PNG", PICTURE[:, :, 2])),
]
REFUSED = [
    Case("31_truncated.jpg", truncated_jpeg, (UnreadableImage, "truncated", 400)),
    Case("32_empty.jpg", lambda p: p.write_bytes(b""), (UnreadableImage, "empty", 400)),
    Case("33_text.jpg", lambda p: p.write_text("a shopping list, not a picture\n"), (UnreadableImage, "not an image", 400)),
    Case("34_icon.ico", icon, (FormatNotOpened, "ICO", 415)),
    Case("35_claims_60000.jpg", lambda p: jpeg_claiming(p, 60000, 60000), (TooManyPixels, "60000 x 60000", 413)),
    Case("36_claims_60000.png", lambda p: png_bomb(p, 60000, 60000, rows=4), (TooManyPixels, "60000 x 60000", 413)),
    Case("37_claims_60000.pam", lambda p: p.write_bytes(b"P7\nWIDTH 60000\nHEIGHT 60000\nDEPTH 3\nMAXVAL 255\n"
                                                         b"TUPLTYPE RGB\nENDHDR\n" + bytes(64)),
         (TooManyPixels, "60000 x 60000", 413)),
    Case("38_bomb_144mp.png", lambda p: png_bomb(p, 12000, 12000), (TooManyPixels, "12000 x 12000", 413)),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """{"readable", "refused", "references"} folders, and {case name: reference RGB}. A reference is
    saved as an ordinary 8-bit RGB PNG named like its case (so both sort alike)."""
    root = tmp_path_factory.mktemp("corpus")
    folders = {name: root / name for name in ("readable", "refused", "references")}
    for folder in folders.values():
        folder.mkdir()
    references = {}
    for case in READABLE:
        references[case.name] = case.write(folders["readable"] / case.name)
        Image.fromarray(np.ascontiguousarray(references[case.name])).save(folders["references"] / f"{Path(case.name).stem}.png")
    for case in REFUSED:
        case.write(folders["refused"] / case.name)
    return {**folders, "arrays": references}


def reference_file(corpus, name: str) -> Path:
    return corpus["references"] / f"{Path(name).stem}.png"


# ---- the decoder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", READABLE, ids=lambda c: c.name)
def test_each_case_decodes_to_its_reference(corpus, case):
    path = corpus["readable"] / case.name
    decoded = np.asarray(open_image(path, 3, None, MAX_PIXELS))
    reference = corpus["arrays"][case.name]
    assert decoded.shape == reference.shape
    assert np.abs(decoded.astype(int) - reference).max() <= 1  # compositing and CMYK round once
    from_bytes = np.asarray(image_from_bytes(path.read_bytes(), case.name, 3, MAX_PIXELS))  # an upload: the same pixels
    np.testing.assert_array_equal(from_bytes, decoded)


@pytest.mark.parametrize("case", READABLE, ids=lambda c: c.name)
def test_grey_models_get_the_luma_of_the_reference(corpus, case):
    grey = np.asarray(open_image(corpus["readable"] / case.name, 1, None, MAX_PIXELS)).astype(int)
    r, g, b = np.moveaxis(corpus["arrays"][case.name].astype(int), 2, 0)
    luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # ITU-R 601-2, as Pillow's "L"
    assert np.abs(grey - luma).max() <= 1


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_every_exif_orientation(tmp_path, orientation):
    path = tmp_path / "photo.png"
    exif_oriented("PNG", orientation)(path)
    np.testing.assert_array_equal(np.asarray(open_image(path, 3, None, MAX_PIXELS)), ORIENTED[orientation](PICTURE))


def test_a_rotated_jpeg_decoded_at_reduced_scale_keeps_its_orientation(tmp_path):
    """Orientations 5-8 swap the sides: the reduced-scale (draft) decoding must still cover the target."""
    photo = np.asarray(Image.fromarray(PICTURE).resize((800, 480), Image.Resampling.BILINEAR))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    Image.fromarray(photo).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.rot90(photo, -1)  # 480 wide, 800 high
    fitted = read_image(tmp_path / "phone.jpg", 3, (100, 60), "aspect", MAX_PIXELS)
    expected = np.asarray(Image.fromarray(np.ascontiguousarray(upright)).resize((60, 100), Image.Resampling.BILINEAR))
    assert fitted.shape == (100, 60, 3)
    assert np.abs(fitted.astype(int) - expected).mean() < 4


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_each_refusal_names_its_reason(corpus, case):
    kind, words, _ = case.refusal
    path = corpus["refused"] / case.name
    for attempt in (lambda: open_image(path, 3, None, MAX_PIXELS),
                    lambda: image_from_bytes(path.read_bytes(), case.name, 3, MAX_PIXELS)):
        with pytest.raises(kind) as caught:
            attempt()
        assert words in caught.value.reason, caught.value.reason


def test_the_pixel_limit_is_a_setting(corpus):
    path = corpus["readable"] / "19_picture.bmp"
    with pytest.raises(TooManyPixels, match="40 x 24"):
        open_image(path, 3, None, W * H - 1)
    assert open_image(path, 3, None, W * H).size == (W, H)


# ---- through the commands --------------------------------------------------------------------------
TRAIN = ("model=small_cnn", "model.widths=[4,8]", "dataset.size=32", "trainer.epochs=1", "trainer.batch_size=8",
         "optimizer=adam", "device=cpu", "device.threads=1", "dataset.workers=0")


@pytest.fixture(scope="module")
def dataset(corpus, tmp_path_factory) -> Path:
    """train/a: every case, readable and refused; train/b: the references of the readable ones, in the
    same order; validation/ and test/: three references in each class."""
    root = tmp_path_factory.mktemp("dataset")
    copies = [(corpus["readable"], "train/a"), (corpus["refused"], "train/a"), (corpus["references"], "train/b")]
    for source, folder in copies:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            (root / folder / path.name).write_bytes(path.read_bytes())
    for folder in ("validation/a", "validation/b", "test/a", "test/b"):
        (root / folder).mkdir(parents=True)
        for path in sorted(corpus["references"].iterdir())[:3]:
            (root / folder / path.name).write_bytes(path.read_bytes())
    return root


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> tuple[Path, str]:
    """A dataset=folder training run on `dataset` (all in the training split): (run folder, stderr)."""
    folder = tmp_path_factory.mktemp("runs") / "corpus"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["train", "dataset=folder", f"dataset.root={dataset}", "dataset.split=[1,0,0]", *TRAIN,
                     f"hydra.run.dir={folder}"])
    assert code == 0, stderr.getvalue()
    return folder, stderr.getvalue()


def test_training_skips_each_refused_file_with_the_reason_and_goes_on(trained):
    run, stderr = trained
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"skipped {len(REFUSED)} unreadable" in warnings[0], stderr
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1


@pytest.mark.parametrize("in_memory", [True, False])
def test_folder_images_equal_their_references(dataset, in_memory):
    """What dataset=folder trains on (in memory, or streamed from the files): each case's image next
    to its reference's, at the training size."""
    cfg = {"name": "folder", "root": str(dataset), "size": 32, "channels": 3, "resize": "aspect", "split": [1, 0, 0],
           "strict": False, "check": True, "max_pixels": MAX_PIXELS, "normalize": "scale", "in_memory": in_memory,
           "memory_limit_mb": 64, "workers": 0, "limit": None}
    from omegaconf import OmegaConf

    with contextlib.redirect_stderr(io.StringIO()):
        train = create_dataset(OmegaConf.create(cfg), seed=0).split("train")
    images = train.images if in_memory else train.images.read(np.arange(len(train)))
    cases, references = images[train.labels == 0], images[train.labels == 1]
    assert len(cases) == len(references) == len(READABLE)
    assert (cases.int() - references.int()).abs().max() <= 2


def test_data_show_counts_only_the_readable_files(cnnexp, dataset):
    result = cnnexp("data", "show", "dataset=folder", f"dataset.root={dataset}", "dataset.size=32", "dataset.workers=0", "out=show.png")
    assert result.code == 0, result.err
    assert f"skipped {len(REFUSED)} unreadable" in result.err and "31_truncated.jpg" in result.err
    cells = [line.replace("│", " ").split() for line in result.out.splitlines()]
    rows = {row[0]: row[1:] for row in cells if row[:1] in (["a"], ["b"])}
    assert rows == {label: [str(len(READABLE)), "3", "3", str(len(READABLE) + 6)] for label in "ab"}, result.out
    assert f"{len(REFUSED)} unreadable files skipped" in result.out
    assert Path("show.png").is_file()


def test_features_of_each_case_equal_its_references(cnnexp, trained):
    run, _ = trained
    result = cnnexp("features", f"run={run}", "out=f.h5", "splits=[train]", "device=cpu")
    assert result.code == 0, result.err
    assert f"skipped {len(REFUSED)} unreadable" in result.err
    with h5py.File("f.h5") as f:
        features, labels = f["train"]["features"][:], f["train"]["labels"][:]
    cases, references = features[labels == 0], features[labels == 1]
    assert len(cases) == len(references) == len(READABLE)
    np.testing.assert_allclose(cases, references, atol=0.02 * np.abs(references).max())


@pytest.mark.parametrize("case", READABLE, ids=lambda c: c.name)
def test_predict_viz_and_serve_give_the_model_the_reference_pixels(corpus, case):
    """The tensor `predict` and `viz` make of a file and the one `serve` makes of its upload: the
    reference's, at the run's size (the end-to-end answers below cannot tell small changes apart)."""
    shape, path = (3, 32, 32), corpus["readable"] / case.name
    expected = fit(Image.fromarray(np.ascontiguousarray(corpus["arrays"][case.name])), shape[1:], "aspect").int()
    from_file = load(path, shape, "aspect", False, 0.0, MAX_PIXELS)[0]
    from_upload = prepare(decode_upload(path.read_bytes(), case.name, 3, MAX_PIXELS), shape, "aspect", False, 0.0)[0]
    assert (from_file.int() - expected).abs().max() <= 2
    assert torch.equal(from_file, from_upload)


def predictions(result) -> dict:
    return {Path(row["image"]).stem: row["top"] for row in map(json.loads, result.out.splitlines())}


def same_answer(a: list[dict], b: list[dict], tolerance: float = 1e-3) -> bool:
    return [g["label"] for g in a] == [g["label"] for g in b] and all(
        abs(x["prob"] - y["prob"]) <= tolerance for x, y in zip(a, b))


def test_predict_gives_each_case_its_references_answer(cnnexp, trained, corpus):
    run, _ = trained
    cases = cnnexp("predict", f"run={run}", f"image={corpus['readable']}", "--json", "topk=2")
    references = cnnexp("predict", f"run={run}", f"image={corpus['references']}", "--json", "topk=2")
    assert cases.code == references.code == 0, cases.err + references.err
    got, expected = predictions(cases), predictions(references)
    assert got.keys() == expected.keys() and len(got) == len(READABLE)
    for stem in got:
        assert same_answer(got[stem], expected[stem]), (stem, got[stem], expected[stem])


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_predict_refuses_each_bad_file_in_one_line(cnnexp, trained, corpus, case):
    run, _ = trained
    result = cnnexp("predict", f"run={run}", f"image={corpus['refused'] / case.name}")
    assert result.code == 2 and result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert case.refusal[1] in result.err and case.name in result.err


def test_predict_skips_refused_files_in_a_folder(cnnexp, trained, dataset):
    run, _ = trained
    result = cnnexp("predict", f"run={run}", f"image={dataset / 'train' / 'a'}", "--json")
    assert result.code == 0, result.err
    searched = [case for case in REFUSED if Path(case.name).suffix in IMAGE_SUFFIXES]  # not the .ico
    assert len(predictions(result)) == len(READABLE)
    assert f"skipped {len(searched)} of {len(READABLE) + len(searched)} files" in result.err


def test_viz_draws_each_case_as_its_reference(cnnexp, trained, corpus):
    """Grad-CAM over the readable cases and over their references: the same guesses printed and the
    same pictures."""
    run, _ = trained
    outputs = {}
    for folder in ("readable", "references"):
        result = cnnexp("viz", "gradcam", f"run={run}", f"image={corpus[folder]}", f"out={folder}-cam")
        assert result.code == 0, result.err
        outputs[folder] = result.out
    for case in READABLE:
        stem = Path(case.name).stem
        drawn = [np.asarray(Image.open(Path(f"{folder}-cam") / f"gradcam-{stem}.png").convert("RGB")).astype(int)
                 for folder in ("readable", "references")]
        assert drawn[0].shape == drawn[1].shape and np.abs(drawn[0] - drawn[1]).mean() < 2, stem


@pytest.mark.parametrize("case", REFUSED[::3], ids=lambda c: c.name)
def test_viz_refuses_a_bad_file_in_one_line(cnnexp, trained, corpus, case):
    run, _ = trained
    result = cnnexp("viz", "gradcam", f"run={run}", f"image={corpus['refused'] / case.name}")
    assert result.code == 2 and result.err.count("\n") == 1 and case.refusal[1] in result.err, result.err


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    run, _ = trained
    started = Server(run, tmp_path_factory.mktemp("serve") / "serve.log", "topk=2")
    yield started
    assert started.stop() == 0


def test_serve_answers_each_case_as_its_reference(server, corpus):
    for case in READABLE:
        status, answer = server.predict([(case.name, (corpus["readable"] / case.name).read_bytes())])
        ref_status, ref_answer = server.predict([("ref.png", reference_file(corpus, case.name).read_bytes())])
        assert status == ref_status == 200, answer
        assert same_answer(answer["images"][0]["top"], ref_answer["images"][0]["top"]), case.name


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_serve_refuses_each_bad_upload_and_goes_on(server, corpus, case):
    _, words, status = case.refusal
    answer_status, answer = server.predict([(case.name, (corpus["refused"] / case.name).read_bytes())])
    assert answer_status == status and words in answer["error"], answer
    assert server.request("GET", "/health")[0] == 200
    good = reference_file(corpus, READABLE[0].name)
    assert server.predict([(good.name, good.read_bytes())])[0] == 200


def test_a_bad_max_pixels_is_one_line(cnnexp, trained, corpus):
    run, _ = trained
    result = cnnexp("predict", f"run={run}", f"image={corpus['references']}", "max_pixels=0")
    assert result.code == 2 and result.err.count("\n") == 1 and "max_pixels=0 must be" in result.err, result.err
    result = cnnexp("train", "dataset=folder", "dataset.root=.", "dataset.max_pixels=-5", *TRAIN)
    assert result.code == 2 and result.err.count("\n") == 1 and "dataset.max_pixels=-5 must be" in result.err, result.err
