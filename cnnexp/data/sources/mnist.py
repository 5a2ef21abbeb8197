"""MNIST through torchvision: 60,000 training images (the last `val_size` validate) and the 10,000 test images."""

from pathlib import Path

from cnnexp.data.registry import register_dataset
from cnnexp.data.image_data import ImageData, Split
from cnnexp.utils.errors import UserError


def load_mnist(root: Path, train: bool, download: bool):
    """torchvision's MNIST (imported here: the dataset registry imports this module for every run)."""
    from torchvision.datasets import MNIST

    try:
        return MNIST(str(root), train=train, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found ..." or "Error downloading ..."
        reason = "could not download it (offline?)" if "download" in str(exc).lower() and download else "missing"
        raise UserError(
            f"MNIST not found under {root}/MNIST/raw ({reason}); set dataset.root=<folder holding MNIST/raw>, "
            "or CNNEXP_DATA=<folder holding mnist/MNIST/raw> for every command"
        )
    except OSError as exc:  # offline download
        raise UserError(
            f"cannot download MNIST into {root} ({exc.__class__.__name__}); "
            "copy the raw files there or set dataset.root=<folder holding MNIST/raw>"
        )


@register_dataset
def mnist(cfg, seed: int = 0) -> ImageData:
    root = Path(cfg.root).expanduser()
    train, test = (load_mnist(root, flag, cfg.download) for flag in (True, False))
    n_val = cfg.val_size
    if n_val >= len(train.targets):
        raise UserError(f"dataset.val_size={n_val} must be between 0 and {len(train.targets) - 1}")
    images, labels = train.data.unsqueeze(1), train.targets.long()
    n_train = len(labels) - n_val
    splits = {
        "train": Split(images[:n_train].contiguous(), labels[:n_train].contiguous()),
        "val": Split(images[n_train:].contiguous(), labels[n_train:].contiguous()),
        "test": Split(test.data.unsqueeze(1).contiguous(), test.targets.long()),
    }
    return ImageData(splits, [str(i) for i in range(10)], meta={"source": str(root)})
