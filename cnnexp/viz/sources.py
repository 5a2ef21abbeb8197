"""Which images a picture is made for: `image=` names a file, a folder or a glob (read as `predict`
reads them), `olivetti:N` (face N of the embedded Olivetti GIF) or `<split>:<index>` (an image of
the run's own dataset). Each comes back named and at the run's training size, as uint8 C x H x W."""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from cnnexp.data.sources.olivetti import embedded_gif, read_faces
from cnnexp.inference.inputs import fit, image_files, load
from cnnexp.engine.assemble import Restored
from cnnexp.schemas.datasets import MAX_PIXELS
from cnnexp.utils.errors import UserError
from cnnexp.utils.choices import SPLITS


@dataclass
class Picked:
    name: str  # for file names and titles: the file's stem, olivetti-N or <split>-<index>
    image: torch.Tensor  # uint8 C x H x W at the run's image size


def pick_images(spec, restored: Restored) -> list[Picked]:
    if spec is None:
        raise UserError("say which image: image=<file, folder or glob>, image=olivetti:<0-399> or image=test:<index>")
    text = str(spec)
    kind, _, index = text.partition(":")
    if kind == "olivetti" and index:
        return [olivetti_face(parse_index(text, index), restored)]
    if kind in SPLITS and index:
        return [dataset_image(kind, parse_index(text, index), restored)]
    return [Picked(path.stem, load(path, restored.image_shape, restored.resize, False, 0.0, MAX_PIXELS)[0])
            for path in image_files(text)]


def parse_index(spec: str, index: str) -> int:
    if not index.isdigit():
        raise UserError(f"image={spec}: '{index}' is not an image number; write e.g. image=olivetti:12 or image=test:3")
    return int(index)


def olivetti_face(index: int, restored: Restored) -> Picked:
    faces = read_faces(embedded_gif())
    if index >= len(faces):
        raise UserError(f"image=olivetti:{index} is out of range; the Olivetti GIF has faces 0 to {len(faces) - 1}")
    face = Image.fromarray(faces[index]).convert("RGB" if restored.image_shape[0] == 3 else "L")
    return Picked(f"olivetti-{index}", fit(face, restored.image_shape[1:], restored.resize))


def dataset_image(split_name: str, index: int, restored: Restored) -> Picked:
    split = restored.load_data().split(split_name)
    if index >= len(split):
        raise UserError(f"image={split_name}:{index} is out of range; the {split_name} split has images 0 to "
                        f"{len(split) - 1}")
    images = split.images
    image = images[index] if isinstance(images, torch.Tensor) else images.read(np.array([index]))[0]
    return Picked(f"{split_name}-{index}", image.cpu())
