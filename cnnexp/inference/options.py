"""Checks of the keys `predict` and `serve` share. No torch here: serve checks its options before it
starts listening and imports torch only while the model loads."""

from cnnexp.utils.errors import UserError


def check_guess_options(cfg) -> None:
    """topk, resize, face_margin, max_pixels."""
    from cnnexp.data.images import pixel_limit  # Pillow and numpy: not for `--help`

    if not isinstance(cfg.topk, int) or isinstance(cfg.topk, bool) or cfg.topk < 1:
        raise UserError(f"topk={cfg.topk!r} must be an integer >= 1")
    if cfg.resize not in (None, "aspect", "simple"):
        raise UserError(f"resize={cfg.resize} is not one of: aspect, simple, null (the run's dataset.resize)")
    if not isinstance(cfg.face_margin, (int, float)) or cfg.face_margin < 0:
        raise UserError(f"face_margin={cfg.face_margin!r} must be a number >= 0")
    pixel_limit(cfg.max_pixels, "max_pixels")
