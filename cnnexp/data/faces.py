"""The largest frontal face in a picture, with OpenCV's Haar cascade (`predict detect_face=true`,
`data from-video`)."""

from functools import lru_cache

import numpy as np

from cnnexp.utils.errors import UserError

CASCADE = "haarcascade_frontalface_default.xml"


@lru_cache(maxsize=1)
def face_cascade():
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise UserError("this OpenCV has no CascadeClassifier (OpenCV 5); install opencv-python-headless<5")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if cascade.empty():
        raise UserError(f"OpenCV could not load {CASCADE}; reinstall opencv-python-headless<5")
    return cascade


def largest_face(grey: np.ndarray, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: int = 24) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest face in a uint8 grey image, or None."""
    boxes = face_cascade().detectMultiScale(grey, scaleFactor=float(scale_factor), minNeighbors=int(min_neighbors),
                                            minSize=(int(min_size), int(min_size)))
    if len(boxes) == 0:
        return None
    return tuple(int(v) for v in max(boxes.tolist(), key=lambda box: box[2] * box[3]))
