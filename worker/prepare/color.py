"""Bring a decoded image of any Pillow mode to 8-bit RGB, as the page reads on white paper."""

from __future__ import annotations

from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode

WHITE = (255, 255, 255, 255)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_DEEP_GREY_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB (itself when it already is): transparency on white, deep greys in 8 bits."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _flatten_on_white(image)
    if image.mode in _DEEP_GREY_MODES:
        # numpy is imported only when such an image turns up: it is most of the render child's start-up.
        from worker.prepare import deep_grey

        if image.mode == "F":
            return deep_grey.float_grey_to_rgb(image)
        return deep_grey.integer_grey_to_rgb(image, sixteen_bit=image.mode in _SIXTEEN_BIT_MODES)
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise InputRejected(
            ReasonCode.UNSUPPORTED_TYPE, f"Images in the {image.mode} colour mode are not supported."
        ) from exc


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, WHITE)
    return Image.alpha_composite(paper, rgba).convert("RGB")
