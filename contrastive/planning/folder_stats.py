"""What a folder holds, read from image headers only: count, sizes and colour.

Reading a header (``PIL.Image.open`` without decoding) takes about 0.05 ms, so a sample of a
few thousand files describes a folder of a million in well under a second. The planner
needs distributions, not every file: the sample is spread evenly over the sorted paths. A
few of them are also decoded the way the cache decodes them, timed: what decoding costs per
image depends on format, size and disk more than on pixel counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contrastive.data.cache import square_uint8
from contrastive.data.folder import DECODE_ERRORS, load_rgb, open_image
from contrastive.errors import ContrastiveError

#: Side the timed decodes are stored at (the planner's usual cache size for large images).
DECODE_TIMING_SIDE = 64

# Modes without colour: a folder of these gets no hue/saturation jitter.
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


#: Long side over this many times the short side: an image mostly outside the central square.
ELONGATED_RATIO = 3

#: Share of such images from which the plan warns.
ELONGATED_WARNING_SHARE = 0.1

#: Views over this many times the median short side are warned about: upscaling adds no
#: detail, and the work grows with the square of the view side.
UPSCALE_WARNING_FACTOR = 2

#: Largest view side that the small-image stem (3x3, stride 1, no max-pool) is suggested for.
SMALL_STEM_MAX_SIDE = 64


@dataclass(frozen=True)
class FolderStats:
    """Image count, size distribution and colour of a training folder.

    Attributes:
        num_images: Images in the folder (all of them, not only the sample).
        sampled: Headers read.
        short_side_median: Median of ``min(width, height)`` in pixels.
        short_side_p10: 10th percentile of the short side.
        short_side_p90: 90th percentile of the short side.
        median_pixels: Median of ``width * height``.
        grayscale_fraction: Share of sampled images stored without colour channels.
        decode_seconds: Median seconds to decode one image into a 64 px cache square on one
            core (timed on a few sampled files); None: not timed.
        elongated_fraction: Share of sampled images whose long side is over
            :data:`ELONGATED_RATIO` times their short side: training and evaluation see only
            their central square.
    """

    num_images: int
    sampled: int
    short_side_median: int
    short_side_p10: int
    short_side_p90: int
    median_pixels: int
    grayscale_fraction: float
    decode_seconds: float | None = None
    elongated_fraction: float = 0.0

    @classmethod
    def from_paths(
        cls, paths: Sequence[str | os.PathLike], sample: int = 2000, decoded: int = 8
    ) -> FolderStats:
        """Reads the headers of up to ``sample`` images spread evenly over ``paths`` and
        times the decoding of ``decoded`` of them.

        Raises:
            ContrastiveError: If ``paths`` is empty or none of the sampled headers opens.
        """
        if not paths:
            raise ContrastiveError("no images to plan for: the folder is empty")
        step = max(1, len(paths) // sample)
        shorts, pixels, gray, readable, elongated = [], [], 0, [], 0
        for path in list(paths)[::step][:sample]:
            try:
                with open_image(path) as image:
                    width, height = image.size
                    gray += image.mode in _GRAY_MODES
            except DECODE_ERRORS:
                continue  # the run names bad files; the plan needs only the good ones
            shorts.append(min(width, height))
            pixels.append(width * height)
            elongated += max(width, height) > ELONGATED_RATIO * max(min(width, height), 1)
            readable.append(path)
        if not shorts:
            raise ContrastiveError(f"could not read any image header in {paths[0]} and others")
        timed = readable[:: max(1, len(readable) // max(decoded, 1))][:decoded]
        short = np.asarray(shorts)
        return cls(
            num_images=len(paths),
            sampled=len(shorts),
            short_side_median=int(np.median(short)),
            short_side_p10=int(np.percentile(short, 10)),
            short_side_p90=int(np.percentile(short, 90)),
            median_pixels=int(np.median(pixels)),
            grayscale_fraction=gray / len(shorts),
            decode_seconds=_decode_seconds(timed),
            elongated_fraction=elongated / len(shorts),
        )

    def describe(self) -> str:
        """One line for the plan's printout."""
        spread = (
            f"{self.short_side_median} px"
            if self.short_side_p10 == self.short_side_p90
            else f"{self.short_side_median} px (10-90%: {self.short_side_p10}-"
            f"{self.short_side_p90})"
        )
        colour = f", {self.grayscale_fraction:.0%} grayscale" if self.grayscale_fraction else ""
        shape = (
            f", {self.elongated_fraction:.0%} longer than {ELONGATED_RATIO}:1"
            if self.elongated_fraction
            else ""
        )
        return f"{self.num_images:,} images, short side {spread}{colour}{shape}"

    def elongated_warning(self) -> str | None:
        """What a folder of panoramas or strips loses, where a tenth or more of it is one."""
        if self.elongated_fraction < ELONGATED_WARNING_SHARE:
            return None
        return (
            f"{self.elongated_fraction:.0%} of the images are longer than {ELONGATED_RATIO}:1: "
            "training and evaluation see only their central square (a 10:1 panorama keeps a "
            "tenth of itself); cut them into square-ish tiles first to use all of each"
        )

    def upscale_warning(self, input_size: int, planned: bool = False) -> str | None:
        """What views of ``input_size`` px cost on images much smaller than that, with the
        flags that fit the images; None where the views are at most
        :data:`UPSCALE_WARNING_FACTOR` times the median short side.

        Args:
            input_size: The view side.
            planned: The run is planned (``--time-budget``): without ``--input-size`` the
                plan sizes the views itself.
        """
        side = self.short_side_median
        if input_size <= UPSCALE_WARNING_FACTOR * side:
            return None
        stem = " --small-image-stem" if side <= SMALL_STEM_MAX_SIDE else ""
        advice = (
            "without --input-size the plan sizes the views to the images"
            if planned
            else f"--input-size {side}{stem} fits these images, or --time-budget (e.g. 10m) "
            "plans the sizes for the folder and this machine"
        )
        return (
            f"views of {input_size} px are {input_size / side:.1f}x the images' short side "
            f"(median {side} px): every view is an upscaled image, with no detail the image "
            f"lacks, at {(input_size / side) ** 2:.0f}x the work per image of {side} px views; "
            f"{advice}"
        )


def _decode_seconds(paths: Sequence[str | os.PathLike]) -> float | None:
    """Median seconds per image to decode ``paths`` as the cache does (None if none decodes)."""
    seconds = []
    for path in paths:
        started = time.perf_counter()
        try:
            square_uint8(load_rgb(path, min_side=DECODE_TIMING_SIDE), DECODE_TIMING_SIDE)
        except DECODE_ERRORS:
            continue
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)) if seconds else None
