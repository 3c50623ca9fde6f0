"""Image preprocessing of the official evaluation (spec clause 15.6), with Pillow and NumPy.

The authors evaluate with timm's validation script (``XuRuihan/ParCNetV2``, ``validate.py``,
"mostly copied from" timm v0.6.11's), whose data configuration comes from
``timm.data.resolve_data_config``; the ParCNetV2 models register no ``default_cfg``
(``models/parcnetv2.py``), so timm's defaults apply (``timm/data/config.py``): input 224 x 224,
interpolation "bicubic", crop_pct ``DEFAULT_CROP_PCT`` = 0.875, mean ``IMAGENET_DEFAULT_MEAN`` =
(0.485, 0.456, 0.406), std ``IMAGENET_DEFAULT_STD`` = (0.229, 0.224, 0.225). timm's
``transforms_imagenet_eval`` then resizes the shorter side to floor(224 / 0.875) = 256 (the
longer side to int(256 * long / short), torchvision's ``Resize``), crops the centre 224 x 224
(offsets int(round((size - 224) / 2))), scales to [0, 1] and normalises.

Limits (clause 15.6): an image is decoded only when the size its header declares is at most
``MAX_IMAGE_PIXELS`` (Pillow's own default limit, applied here whatever Pillow is set to), and
resized only when the resized image (shorter side 256) has at most ``MAX_RESIZED_PIXELS``: a
157-byte 1 x 20000 PNG would otherwise be resized to 256 x 5,120,000 pixels (3.9 GB). Only
regular files are opened (a FIFO would block). Both limits are the C library's
(``PCN_IMAGE_MAX_PIXELS``, ``PCN_IMAGE_MAX_RESIZED_PIXELS`` in ``pcn_image.h``), which ``pcn_predict``
applies to PPM images with the same messages.

Requires Pillow (the ``images`` extra); importing this module does not.
"""

from __future__ import annotations

import math
import warnings
from os import PathLike
from typing import Any

import numpy as np

from parcnetv2.cext import IMAGE_MAX_PIXELS, IMAGE_MAX_RESIZED_PIXELS
from parcnetv2.errors import InputError
from parcnetv2.files import open_regular

__all__ = [
    "CROP_PCT",
    "IMAGE_SIZE",
    "MAX_IMAGE_PIXELS",
    "MAX_RESIZED_PIXELS",
    "MEAN",
    "STD",
    "load_image",
    "require_pillow",
]

IMAGE_SIZE = 224
CROP_PCT = 0.875
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# The limits' one home is the C library's pcn_image.h (pcn_predict applies the same ones):
MAX_IMAGE_PIXELS = IMAGE_MAX_PIXELS  # 89,478,485: Pillow's default limit, 256 MiB of 24-bit pixels / 3
MAX_RESIZED_PIXELS = IMAGE_MAX_RESIZED_PIXELS  # 2**24 = 256 x 65536: aspect ratios up to 256:1


def require_pillow() -> Any:
    """The PIL.Image module, or InputError naming the extra that installs it."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading images needs Pillow: pip install 'parcnetv2[images]'") from None
    return Image


def _resized_size(w: int, h: int, scale: int) -> tuple[int, int]:
    """torchvision's Resize(scale): the shorter side to ``scale``, the longer in proportion."""
    return (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)


def load_image(path: str | PathLike, size: int = IMAGE_SIZE, crop_pct: float = CROP_PCT) -> np.ndarray:
    """The image at ``path`` as the official evaluation feeds it: float32 (3, size, size), CHW,
    RGB, normalised. InputError when the file is missing, not a regular file, not an image Pillow
    can decode, or over the pixel limits (``MAX_IMAGE_PIXELS`` decoded, ``MAX_RESIZED_PIXELS``
    resized; both checked from the header before decoding)."""
    image_module = require_pillow()
    scale = math.floor(size / crop_pct)
    try:
        with open_regular(path) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", image_module.DecompressionBombWarning)  # our limits apply
            with image_module.open(f) as img:
                w, h = img.size
                if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
                    raise InputError(f"image {path} is {w}x{h} pixels, over the limit of {MAX_IMAGE_PIXELS:,}")
                new_w, new_h = _resized_size(w, h, scale)
                if new_w * new_h > MAX_RESIZED_PIXELS:
                    raise InputError(
                        f"image {path} is {w}x{h} pixels: resizing its shorter side to {scale} makes "
                        f"{new_w}x{new_h}, over the limit of {MAX_RESIZED_PIXELS:,} pixels (aspect ratio too extreme)"
                    )
                img.load()
                rgb = img.convert("RGB")
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except image_module.UnidentifiedImageError:  # its message shows the file object's repr
        raise InputError(f"cannot read image {path}: not an image format Pillow can read") from None
    except (OSError, ValueError, EOFError, image_module.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {path}: {getattr(exc, 'strerror', None) or exc}") from None
    resized = rgb.resize((new_w, new_h), image_module.Resampling.BICUBIC)
    top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
    crop = resized.crop((left, top, left + size, top + size))
    pixels = np.asarray(crop, dtype=np.float32) / np.float32(255.0)  # (size, size, 3)
    normalised = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))
