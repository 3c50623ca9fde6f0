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

Requires Pillow (the ``images`` extra); importing this module does not.
"""

from __future__ import annotations

import math
from os import PathLike
from typing import Any

import numpy as np

from parcnetv2.errors import InputError

__all__ = ["CROP_PCT", "IMAGE_SIZE", "MEAN", "STD", "load_image", "require_pillow"]

IMAGE_SIZE = 224
CROP_PCT = 0.875
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def require_pillow() -> Any:
    """The PIL.Image module, or InputError naming the extra that installs it."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading images needs Pillow: pip install 'parcnetv2[images]'") from None
    return Image


def load_image(path: str | PathLike, size: int = IMAGE_SIZE, crop_pct: float = CROP_PCT) -> np.ndarray:
    """The image at ``path`` as the official evaluation feeds it: float32 (3, size, size), CHW,
    RGB, normalised. InputError when the file is missing or not an image Pillow can decode."""
    image_module = require_pillow()
    try:
        with image_module.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except (OSError, ValueError, image_module.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None
    scale = math.floor(size / crop_pct)
    w, h = rgb.size
    if w <= h:
        new_w, new_h = scale, int(scale * h / w)
    else:
        new_w, new_h = int(scale * w / h), scale
    resized = rgb.resize((new_w, new_h), image_module.Resampling.BICUBIC)
    top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
    crop = resized.crop((left, top, left + size, top + size))
    pixels = np.asarray(crop, dtype=np.float32) / np.float32(255.0)  # (size, size, 3)
    normalised = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))
