"""The Task interface: what a translation problem must tell the engine.

A task turns a batch of clean images into ``(input, target)`` pairs, says how many channels the
generator sees and makes, converts network outputs back to images for metrics and samples,
and names its metrics and baselines. Everything runs on the device, on whole batches.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class Task:
    """Base class for tasks. Subclass it, set the class attributes, implement :meth:`make_pair`.

    Images handed to a task are float tensors ``[B, C, H, W]`` in ``[0, 1]`` on the training
    device, with ``C = image_channels`` (the data pipeline converts grey and colour files).
    """

    #: Channels of the clean images the data pipeline should deliver (1 or 3); a task whose
    #: option decides it (``channels``) sets it on the instance in ``__init__``.
    image_channels: ClassVar[int] = 3
    #: True when each image file holds an (input, target) pair side by side, as the reference
    #: pix2pix's aligned data sets do (facades, maps, edges2shoes: A on the left, B on the
    #: right). The pipeline then cuts every file down its middle (an odd width loses its last
    #: column) and delivers both halves, cropped and flipped alike, stacked as channels:
    #: ``[B, 2 * image_channels, H, W]``, the left half's channels first.
    side_by_side: ClassVar[bool] = False
    #: Channels of the generator's input and output.
    in_channels: int = 3
    out_channels: int = 3
    #: False when the generator's input is not an image (e.g. a latent vector): then the
    #: discriminator is unconditional and samples show only outputs.
    input_is_image: ClassVar[bool] = True
    #: True when the task learns the target's colours from the training photos (a colouriser):
    #: a grey photo among them only teaches grey, so the engine warns about such photos at start.
    learns_colour: ClassVar[bool] = False
    #: How many times larger than a user's image its translation is (a super-resolution task's
    #: scale): :meth:`prepare` returns the generator's input at that size, and ``i2i translate``
    #: writes outputs that much larger (alpha enlarged alike). Training pairs stay at one size.
    output_scale: int = 1
    #: Registered metric names computed on validation images (by :meth:`to_image`).
    metrics: ClassVar[tuple[str, ...]] = ("psnr", "ssim")
    #: The metric that picks the ``best`` checkpoint; higher is better unless listed in
    #: ``lower_is_better``.
    main_metric: ClassVar[str] = "psnr"
    lower_is_better: ClassVar[tuple[str, ...]] = ()

    def make_pair(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(input, target)`` for the generator, in the network's value range.

        :param clean: clean images ``[B, image_channels, H, W]`` in [0, 1], on the device
            (``2 * image_channels`` channels for a ``side_by_side`` task).
        :param generator: the random generator to draw noise from, on ``clean``'s device
            (training and validation use separate, seeded ones; validation calls this once per
            image on the CPU, so an image's noise is the same at every evaluation, whatever
            the batch size, the other files or the device).

        Validation images come whole, at their own size, which may be tiny (an icon of 7 x 5 px
        among photos) and odd: an operation that pads by reflection (kornia's default border)
        fails below its kernel's size, so pad by replication (``border_type="replicate"``).
        """
        raise NotImplementedError

    @property
    def clean_channels(self) -> int:
        """Channels of the clean images :meth:`make_pair` gets (both halves of a side-by-side pair)."""
        return self.image_channels * (2 if self.side_by_side else 1)

    def to_image(self, output: Tensor, input: Tensor) -> Tensor:
        """Turn a generator output (or a target) into images in [0, 1] for metrics and saving."""
        return ((output + 1) / 2).clamp(0, 1)

    def input_image(self, input: Tensor) -> Tensor:
        """The generator input as an image, for sample grids."""
        return ((input + 1) / 2).clamp(0, 1)

    def prepare(self, image: Tensor) -> Tensor:
        """Turn a user's image (``[B, 3, H, W]`` RGB in [0, 1]) into a generator input.

        Used by ``i2i translate`` and :meth:`i2i.Model.__call__`. For gray2color this takes the
        luminance; for denoising the image is already the (noisy) input; a task with an
        ``output_scale`` enlarges it that many times.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot translate user images")

    def baselines(self, input: Tensor, target_image: Tensor) -> dict[str, Tensor]:
        """Trivial answers to compare against, as images in [0, 1] (e.g. ``grey copy``)."""
        return {}

    def pair_details(self, input: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Facts about each validation pair worth a column of ``i2i eval --per-image`` (the
        noise level a blind denoiser drew for it, say): ``{name: [B] tensor}``. Default none."""
        return {}

    def wrap_generator(self, generator: nn.Module) -> nn.Module:
        """Wrap the built generator if the task needs to (e.g. residual prediction)."""
        return generator


def takes_photos(task: Any) -> bool:
    """Whether ``task`` implements :meth:`Task.prepare`, so a user's photo can be its input
    (``i2i translate``; ``i2i eval --pair-data`` for a task that makes its own pairs)."""
    return getattr(type(task), "prepare", Task.prepare) is not Task.prepare
