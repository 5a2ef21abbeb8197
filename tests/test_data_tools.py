"""cnnexp data from-video and data show, and the data command's argument handling."""

import cv2
import numpy as np
import pytest
from PIL import Image
from test_folder import photo_folder

from cnnexp.data.sources.olivetti import embedded_gif, read_faces

FRAMES = 24


def face_video(path, frames=FRAMES, blank_every=6):
    """An MJPG video of Olivetti faces (3x, person 0..) pasted at moving spots on a textured background;
    every `blank_every`-th frame has no face."""
    faces = read_faces(embedded_gif())
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(60, 200, (240, 320, 3), dtype=np.uint8), (9, 9), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    for i in range(frames):
        frame = background.copy()
        if i % blank_every != blank_every - 1:
            face = cv2.resize(faces[i], None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
            y, x = 30 + (i % 3) * 10, 40 + (i % 5) * 20
            frame[y : y + face.shape[0], x : x + face.shape[1]] = face[:, :, None]
        writer.write(frame)
    writer.release()
    return path


def test_from_video_finds_faces_and_writes_crops(cnnexp, workdir):
    face_video(workdir / "alice.avi")
    result = cnnexp("data", "from-video", "video=alice.avi", "label=alice", "out=faces", "every=1")
    assert result.code == 0, result.err
    crops = sorted((workdir / "faces" / "alice").glob("alice-*.png"))
    with_face = FRAMES - FRAMES // 6
    assert 0.75 * with_face <= len(crops) <= with_face + 1  # a face in most frames, few false ones
    assert f"{FRAMES} frames, {FRAMES} read" in result.out and f"{len(crops)} crops of 50x70" in result.out
    assert Image.open(crops[0]).size == (50, 70) and Image.open(crops[0]).mode == "RGB"


def test_from_video_every_kth_frame_in_grey(cnnexp, workdir):
    face_video(workdir / "bob.avi", frames=12)
    result = cnnexp("data", "from-video", "video=bob.avi", "label=bob", "out=faces", "every=4", "grey=true",
                    "width=32", "height=40")
    assert result.code == 0, result.err
    crops = sorted((workdir / "faces" / "bob").glob("*.png"))
    assert "12 frames, 3 read (every 4)" in result.out
    assert [c.name for c in crops] == [f"bob-{i:06d}.png" for i in (0, 4, 8)]
    assert Image.open(crops[0]).size == (32, 40) and Image.open(crops[0]).mode == "L"


@pytest.mark.parametrize("setup, args, message", [
    (None, ("video=missing.mp4", "label=a"), "video"),
    ("text", ("video=notes.mp4", "label=a"), "cannot read"),
    (None, ("video=x.mp4",), "label=None"),
    (None, ("video=x.mp4", "label=a", "every=0"), "every=0"),
])
def test_from_video_errors_are_one_line(cnnexp, workdir, setup, args, message):
    if setup == "text":
        (workdir / "notes.mp4").write_text("not a video\n")
    result = cnnexp("data", "from-video", *args)
    assert result.code == 2 and result.err.count("\n") == 1 and message in result.err, result.err


def test_show_prints_counts_and_writes_a_grid(cnnexp, workdir):
    photo_folder(workdir / "photos", per_class=5)
    result = cnnexp("data", "show", "dataset=folder", "dataset.root=photos", "dataset.size=48",
                    "augmentation=keras", "augmentation.crop_size=[40,40]", "samples=4", "out=grid.png")
    assert result.code == 0, result.err
    assert "cats" in result.out and "dogs" in result.out and "3x48x48" in result.out
    assert "train mean [" in result.out and "augmentation=keras: model input 3x40x40" in result.out
    grid = Image.open(workdir / "grid.png")
    assert grid.size[0] > 300 and grid.size[1] > 300


def test_show_default_path_and_builtin_dataset(cnnexp, workdir):
    result = cnnexp("data", "show", "dataset=olivetti", "augmentation=strong")
    assert result.code == 0, result.err
    assert "person_39" in result.out and (workdir / "outputs" / "data" / "olivetti_samples.png").is_file()


@pytest.mark.parametrize("args, message", [
    (("frobnicate",), "unknown data tool 'frobnicate'"),
    (("build-hdf5", "colour=red"), "unknown key 'colour'"),
    (("build-hdf5", "src"), "expected key=value"),
    (("show", "dataset=nope"), "unknown dataset 'nope'"),
])
def test_bad_arguments_are_one_line(cnnexp, args, message):
    result = cnnexp("data", *args)
    assert result.code == 2 and result.err.count("\n") == 1 and message in result.err, result.err


def test_help_lists_tools_and_keys(cnnexp):
    assert "build-hdf5" in cnnexp("data").out and "from-video" in cnnexp("data", "--help").out
    assert "min_neighbors" in cnnexp("data", "from-video", "--help").out
    assert "data" in cnnexp("--help").out
