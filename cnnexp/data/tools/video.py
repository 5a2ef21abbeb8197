"""Faces from a video, as the TensorFlow 2 walkthrough builds its dataset: every k-th frame, the
largest face OpenCV's Haar cascade finds, cropped with a margin and resized, one PNG per frame
into `out/<label>/` (one folder per person, ready for `dataset=folder`)."""

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnexp.data.faces import face_cascade, largest_face
from cnnexp.data.sources.folder import user_path
from cnnexp.utils.errors import UserError

@dataclass
class VideoReport:
    folder: Path
    frames: int = 0  # frames in the video
    read: int = 0  # frames looked at (every k-th)
    faces: int = 0
    written: int = 0


def frame_face(frame: np.ndarray, opts) -> tuple[int, int, int, int] | None:
    """The largest face in a BGR or grey frame (histogram-equalised first), with the tool's detector options."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return largest_face(cv2.equalizeHist(grey), opts.scale_factor, opts.min_neighbors, opts.min_face)


def crop_face(frame: np.ndarray, box, margin: float) -> np.ndarray:
    """The box grown by `margin` of its size on every side, clipped to the frame."""
    x, y, w, h = box
    dx, dy = int(round(w * margin)), int(round(h * margin))
    top, left = max(0, y - dy), max(0, x - dx)
    return frame[top : min(frame.shape[0], y + h + dy), left : min(frame.shape[1], x + w + dx)]


def save_face(frame: np.ndarray, box, opts, path: Path) -> bool:
    import cv2

    face = cv2.resize(crop_face(frame, box, opts.margin), (opts.width, opts.height),
                      interpolation=cv2.INTER_AREA)
    if opts.grey and face.ndim == 3:
        face = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    return bool(cv2.imwrite(str(path), face))


def check_options(opts) -> None:
    label = str(opts.label or "")
    if not label or "/" in label or "\\" in label or label.startswith("."):
        raise UserError(f"label={opts.label!r} must be a folder name for the person, e.g. label=alice")
    for key in ("every", "width", "height", "min_face", "min_neighbors"):
        if not isinstance(opts[key], int) or opts[key] < 1:
            raise UserError(f"{key}={opts[key]!r} must be a positive integer")
    if not 0 <= opts.margin <= 1 or opts.scale_factor <= 1:
        raise UserError(f"margin={opts.margin} must be in [0, 1] and scale_factor={opts.scale_factor} above 1")


@contextmanager
def native_stderr_silenced():
    """FFmpeg inside OpenCV prints its own complaints (e.g. "moov atom not found") to file
    descriptor 2; the user gets our one-line error instead."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def open_video(path: Path):
    import cv2

    if not path.is_file():
        raise UserError(f"video {path} not found; give video=<file> (e.g. an .mp4 or .avi)")
    with native_stderr_silenced():
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot read {path} as a video (OpenCV could not decode it); convert it to .mp4 or .avi")
    return capture


def faces_from_video(opts, progress) -> VideoReport:
    """`cnnexp data from-video`: opts is the merged `conf/data_from_video.yaml` node."""
    import cv2

    check_options(opts)
    video = user_path(opts.video, "video")
    capture = open_video(video)
    face_cascade()  # a clear error before any frame is read
    folder = user_path(opts.out, "out") / opts.label
    folder.mkdir(parents=True, exist_ok=True)
    report = VideoReport(folder)
    task = progress.add_task("frames", total=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None)
    while capture.grab():  # grab every frame, decode only the ones looked at
        index, report.frames = report.frames, report.frames + 1
        progress.advance(task)
        if index % opts.every:
            continue
        ok, frame = capture.retrieve()
        if not ok:
            continue
        report.read += 1
        box = frame_face(frame, opts)
        if box is None:
            continue
        report.faces += 1
        report.written += save_face(frame, box, opts, folder / f"{video.stem}-{index:06d}.png")
    capture.release()
    if report.read == 0:
        raise UserError(f"{video} has no frames OpenCV can decode; convert it to .mp4 or .avi")
    return report
