"""i2i's built-in tasks: colourisation (``gray2color``), denoising (``denoise``), JPEG artifact
removal (``dejpeg``), deblurring (``deblur``), super-resolution (``superres``), ``color2gray``,
and ``paired`` (pix2pix's side-by-side A|B data sets).

Each task lives in its own module; kornia is imported lazily inside the methods that use it so
``i2i list`` and other quick commands do not pay for it.
"""

from __future__ import annotations

import i2i

from .color2gray import Color2Gray
from .deblur import Deblur
from .dejpeg import Dejpeg
from .denoise import Denoise
from .restoration import ResidualGenerator
from .gray2color import Gray2Color
from .paired import Paired
from .superres import SuperRes

__all__ = ["Color2Gray", "Deblur", "Dejpeg", "Denoise", "Gray2Color", "Paired", "ResidualGenerator", "SuperRes", "register_tasks"]


@i2i.hookimpl
def register_tasks(register):
    register("gray2color", Gray2Color)
    register("denoise", Denoise)
    register("dejpeg", Dejpeg)
    register("deblur", Deblur)
    register("superres", SuperRes)
    register("color2gray", Color2Gray)
    register("paired", Paired)
