"""Write a short video of one Olivetti person, to try `cnnexp data from-video` without a camera.

Each of the person's 10 faces is enlarged four times (228 x 188 pixels, large enough for OpenCV's Haar
cascade) and shown for a few frames on a grey 640 x 480 background, drifting a little from frame to
frame, as a face does in front of a camera.

    python docs/examples/face_video.py 5 person05.avi      # person 5 of the 40
"""

import sys

import cv2
import numpy as np

from cnnexp.data.sources.olivetti import embedded_gif, read_faces

FRAME_W, FRAME_H = 640, 480
SCALE = 4
FRAMES_PER_FACE = 6
FPS = 10


def frames(person: int):
    """The person's faces, enlarged and drifting across a grey frame."""
    faces = read_faces(embedded_gif())[person * 10:(person + 1) * 10]
    for face_index, face in enumerate(faces):
        big = cv2.resize(face, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
        for step in range(FRAMES_PER_FACE):
            frame = np.full((FRAME_H, FRAME_W), 128, np.uint8)
            left = 200 + 8 * step + 4 * face_index
            top = 120 + 4 * step
            frame[top:top + big.shape[0], left:left + big.shape[1]] = big
            yield cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def main(person: int, out: str) -> None:
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (FRAME_W, FRAME_H))
    for frame in frames(person):
        writer.write(frame)
    writer.release()
    print(f"wrote {out}: {10 * FRAMES_PER_FACE} frames of person {person}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
