"""The data pipeline: image files -> uint8 tensors -> training and validation batches.

* :mod:`i2i.data.decode`: one file to an upright uint8 tensor (every format and bit depth).
* :mod:`i2i.data.sources`: the sample photos or a folder, checked and split into train/val.
* :mod:`i2i.data.pipeline`: :class:`ImageData`, batches on the device and resumable state.

Tasks never see files: they receive float batches from :class:`ImageData`. ``ImageData`` is
imported lazily so that ``i2i translate`` does not pay for kornia's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .decode import IMAGE_EXTENSIONS, IMAGE_KINDS, UnreadableImageError, decode_image, pil_to_tensor, probe_size, to_pil, to_uint8
from .sources import SAMPLE, find_images, load_images_for_inference, sample_folder, split_files

if TYPE_CHECKING:
    from .pipeline import ImageData

__all__ = [
    "IMAGE_EXTENSIONS", "IMAGE_KINDS", "SAMPLE", "ImageData", "UnreadableImageError", "decode_image", "find_images",
    "load_images_for_inference", "pil_to_tensor", "probe_size", "sample_folder", "split_files", "to_pil", "to_uint8",
]


def __getattr__(name: str) -> Any:
    if name == "ImageData":
        from .pipeline import ImageData

        return ImageData
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
