"""Image folders: finding images recursively, decoding any mode to RGB, optional labels.

Training needs no labels, so nothing here is sized by the number of folders. Labels are
derived only on request (evaluation), from the first folder level below the root.

Bad files are expected in real folders. The policy:

* :func:`list_images` lists regular files with an image extension; directories, dangling
  links, link loops, FIFOs and devices are ignored, and directory links are not followed
  (no hangs). Hidden and system folders (``.*``, ``__MACOSX``, ``@eaDir``) are not
  searched: they hold copies and metadata, which would otherwise become classes.
* :func:`check_readable` is the cheap pre-pass before training: ``Image.open`` + ``verify``
  reads headers (and, for PNG, checksums) but decodes no pixels, about 0.05 ms per JPEG
  against 4 ms for a full decode of a 1024x768 photo. It catches empty, non-image,
  missing, unreadable and oversized files and truncated PNGs, and fails when more than
  ``max_bad_fraction`` of the files are bad.
* :class:`ImageDataset` catches what only a full decode reveals (truncated JPEG data): the
  file is skipped with a warning naming it, and the epoch goes on.
* Images with more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` are unreadable. PIL itself
  only warns between 1x and 2x the limit; here anything above it is refused, so one
  policy holds, with one message naming the file. Set the environment variable
  ``CONTRASTIVE_MAX_IMAGE_PIXELS`` (0 or ``none``: no limit) to allow them from the CLI,
  or raise ``PIL.Image.MAX_IMAGE_PIXELS`` in Python.

High-bit-depth images (16-bit, 32-bit integer and float grayscale) are mapped to 8 bits by
one rule (:func:`_rescale_to_8bit`): integers by the smallest of 8, 10, 12, 14 and 16 bits
that holds the image's maximum, floats in [0, 1] by 255, any other range by the image's own
minimum and maximum.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from contrastive.data.image_files import IMAGE_EXTENSIONS, RUN_MARKER
from contrastive.errors import ContrastiveError

#: What :func:`load_rgb` raises on a file it cannot decode, as far as PIL documents it (its
#: plugins raise more on malformed data; callers that must never stop catch ``Exception``).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
log = logging.getLogger(__name__)

#: A scan says how many images it has found after every this many (255,000 took 12 s).
SCAN_PROGRESS_IMAGES = 100_000

# What transparent pixels become (see load_rgb); white is what image viewers show.
_BACKGROUNDS = ("white", "opaque_mean")
_WHITE = (255, 255, 255)

DEFAULT_MAX_BAD_FRACTION = 0.1

#: Environment variable overriding ``PIL.Image.MAX_IMAGE_PIXELS`` (0 or "none": no limit).
MAX_PIXELS_VARIABLE = "CONTRASTIVE_MAX_IMAGE_PIXELS"
#: Environment variable fixing the bit depth of integer grayscale images over 8 bits (a
#: 12-bit sensor's 16-bit files: 12); unset or "auto": guessed per image.
BIT_DEPTH_VARIABLE = "CONTRASTIVE_BIT_DEPTH"

# Modes holding more than 8 bits per pixel: rescaled rather than clipped by ``convert``.
_HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"LA", "PA", "RGBa"})
# Bit depths of integer sensors and formats, the candidates for an integer image's range.
_INTEGER_DEPTHS = (8, 10, 12, 14, 16)

# How many bad files an error or warning names before it says "and N more".
_EXAMPLES_SHOWN = 3

# Folders that hold copies or metadata, never data: macOS zip archives add "__MACOSX"
# (AppleDouble twins of every file), Synology NAS shares add "@eaDir" (thumbnails named like
# the photos). Besides these, every folder whose name starts with "." (".git",
# ".ipynb_checkpoints", ".Trash-1000") is left out.
_SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir"})


def list_images(root: str | os.PathLike) -> list[Path]:
    """Lists every image file below ``root``, recursively, sorted by relative path.

    Symbolic links are followed, to files and to folders (a split made of links to class
    folders); a linked folder already scanned (a link loop, or a second link to the same
    folder) is scanned once, and a warning names it. Broken links are counted.
    Directories whose names look like images are ignored. Folders named ``.*`` (``.git``,
    ``.ipynb_checkpoints``), ``__MACOSX`` and ``@eaDir`` hold copies and metadata, not
    data: they are not searched, and hidden files (``.*``) are passed over as they are.
    Files with other extensions, FIFOs and devices named
    like images, and those folders are counted in one warning (naming a few folders), so
    nothing is left out silently.

    Args:
        root: Folder to scan.

    Returns:
        Sorted absolute paths of the image files.

    Raises:
        ContrastiveError: If ``root`` does not exist or is not a directory.
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise ContrastiveError(f"data folder does not exist: {root_path}")
    if not root_path.is_dir():
        raise ContrastiveError(f"data path is not a folder: {root_path}")
    found: list[Path] = []
    ignored: Counter[str] = Counter()
    scanned: set[tuple[int, int]] = set()
    repeated_folders: list[str] = []
    hidden_folders: list[str] = []
    walk = os.walk(root_path, onerror=_warn_walk_error, followlinks=True)
    for dirpath, dirnames, filenames in walk:
        try:
            status = os.stat(dirpath)
        except OSError:
            dirnames.clear()
            continue
        if (status.st_dev, status.st_ino) in scanned:
            # Reached again through a link: a loop would never end, a second link would
            # train on every image twice.
            dirnames.clear()
            repeated_folders.append(dirpath)
            continue
        scanned.add((status.st_dev, status.st_ino))
        if RUN_MARKER in filenames and Path(dirpath) != root_path:
            # A run written inside the data (--out under --data): its sprite and plots
            # are not data.
            dirnames.clear()
            ignored["run folder"] += 1
            continue
        # Pruned in place, so os.walk never descends: notebook checkpoints and zip
        # leftovers hold copies of the images, which would be trained on twice and
        # become classes of their own.
        pruned = [name for name in dirnames if _is_hidden_folder(name)]
        if pruned:
            dirnames[:] = [name for name in dirnames if not _is_hidden_folder(name)]
            hidden_folders += [
                relative_key(Path(dirpath) / name, root_path) for name in sorted(pruned)
            ]
        for name in filenames:
            extension = os.path.splitext(name)[1].lower()
            if name.startswith("._"):
                # macOS writes "._photo.jpg" beside each file copied to a foreign disk: its
                # metadata, not an image, though the extension says so.
                ignored["._ (macOS metadata)"] += 1
            elif name.startswith(".") and extension in IMAGE_EXTENSIONS:
                # Hidden like the .* folders passed over above: thumbnails and caches of
                # tools, not the user's images (one was counted as an unreadable image).
                ignored["hidden (.*) image-named file"] += 1
            elif extension in IMAGE_EXTENSIONS:
                path = Path(dirpath) / name
                if path.is_file():
                    found.append(path.absolute())
                    if len(found) % SCAN_PROGRESS_IMAGES == 0:
                        # A million files take ~50 s to list: the first line must not wait.
                        log.info("looking for images in %s: %d so far", root_path, len(found))
                elif path.is_symlink() and not path.exists():
                    ignored["broken link"] += 1
                else:
                    # A FIFO, socket or device (or a link to one, like /dev/zero): never
                    # opened, since reading it could block or never end; counted, not
                    # dropped silently. Folders named like images are in dirnames.
                    ignored[_special_file_kind(path)] += 1
            else:
                # ".DS_Store" has no extension to Python; its name says more than "none".
                ignored[extension or (name if name.startswith(".") else "no extension")] += 1
    if repeated_folders:
        warnings.warn(
            f"scanned {len(repeated_folders)} linked folder(s) in {root_path} once only, "
            f"reached again through a link (a loop, or two links to one folder), e.g. "
            f"{repeated_folders[0]}",
            stacklevel=2,
        )
    run_folders = ignored.pop("run folder", 0)
    if run_folders:
        warnings.warn(
            f"ignored {run_folders} run folder(s) of contrastive in {root_path} "
            f"(folders holding {RUN_MARKER}: their plots and thumbnails are not data)",
            stacklevel=2,
        )
    parts = []
    if ignored:
        counts = ", ".join(f"{count} {kind}" for kind, count in sorted(ignored.items()))
        parts.append(
            f"ignored {sum(ignored.values())} non-image file(s) in {root_path}: {counts} "
            f"(images are {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    if hidden_folders:
        shown = ", ".join(hidden_folders[:_EXAMPLES_SHOWN])
        more = len(hidden_folders) - _EXAMPLES_SHOWN
        parts.append(
            f"ignored {len(hidden_folders)} hidden or system folder(s) "
            + ("" if ignored else f"in {root_path} ")
            + f"(names starting with '.', {', '.join(sorted(_SYSTEM_FOLDERS))}), "
            + f"not searched: {shown}"
            + (f" and {more} more" if more > 0 else "")
        )
    if parts:
        # One warning, one line: a folder of junk is one notice, not a screenful.
        warnings.warn("; ".join(parts), stacklevel=2)
    found.sort(key=lambda p: relative_key(p, root_path))
    return found


def _special_file_kind(path: Path) -> str:
    """What an image-named entry that is neither a regular file nor a broken link is."""
    try:
        mode = path.stat().st_mode
    except OSError:  # vanished since the listing, or its folder is not searchable
        return "unreadable entry"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "not a regular file"


def _is_hidden_folder(name: str) -> bool:
    """Whether a folder holds copies or metadata rather than data (see _SYSTEM_FOLDERS)."""
    return name.startswith(".") or name in _SYSTEM_FOLDERS


def relative_key(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form; a path outside ``root`` kept whole."""
    try:
        return path.relative_to(root.absolute()).as_posix()
    except ValueError:
        return path.as_posix()


def _warn_walk_error(error: OSError) -> None:
    warnings.warn(f"cannot read folder {error.filename}: {error.strerror}", stacklevel=2)


def load_rgb(
    path: str | os.PathLike, min_side: int | None = None, background: str = "white"
) -> Image.Image:
    """Decodes an image file of any mode into an 8-bit RGB image.

    EXIF orientation is applied; transparency is composited onto white; 16-bit and float
    images are rescaled to 0..255 (rule: :func:`_rescale_to_8bit`); CMYK, palette and
    grayscale images are converted.

    Args:
        path: Image file.
        min_side: If given, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain
            (PIL's ``draft``) as long as its short side stays at least this many pixels:
            a 4000 px photo stored at 64 px then decodes about 10x faster.
        background: What transparent pixels become: ``"white"``, as image viewers show
            them, or ``"opaque_mean"``, the mean colour of the visible pixels, so that a
            transparent area adds nothing to a comparison made after subtracting the mean.

    Returns:
        A fully loaded RGB ``PIL.Image``.

    Raises:
        Image.DecompressionBombError: If the image has more pixels than
            :func:`max_image_pixels` allows.
        ContrastiveError: If ``$CONTRASTIVE_MAX_IMAGE_PIXELS`` is not a pixel count.
        Exception: Whatever PIL raises on a file it cannot decode: mostly ``OSError``, but
            its plugins also raise ``ValueError``, ``SyntaxError``, ``struct.error`` and more.
    """
    with open_image(path) as image:
        if min_side is not None and image.format == "JPEG":
            scale = min_side / max(min(image.size), 1)
            if scale < 0.5:
                image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image, background)


def open_image(path: str | os.PathLike) -> Image.Image:
    """``Image.open`` that refuses images over the pixel limit instead of warning.

    The limit is ``$CONTRASTIVE_MAX_IMAGE_PIXELS`` when set (see :func:`max_image_pixels`),
    else ``PIL.Image.MAX_IMAGE_PIXELS``. Both of PIL's cases, over the limit (a warning in
    PIL) and over twice the limit (an error worded differently), raise one error naming
    the file, its pixel count, the limit and the variable.

    Raises:
        Image.DecompressionBombError: If the image has more pixels than the limit.
        ContrastiveError: If ``$CONTRASTIVE_MAX_IMAGE_PIXELS`` is not a pixel count.
    """
    limit = max_image_pixels()
    if os.environ.get(MAX_PIXELS_VARIABLE, "").strip():
        # PIL checks its own global on open (and fails at twice it): it must agree with
        # the limit asked for, or a raised limit would still fail inside Image.open.
        Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            # Replaced by the stricter check below, which names the file.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        # Over twice the limit PIL refuses before the size is known here; its message
        # ("Image size (N pixels) exceeds limit of ...") carries the count.
        counted = re.search(r"\((\d+) pixels\)", str(error))
        raise _over_pixel_limit(path, int(counted[1]) if counted else None, limit) from None
    pixels = image.width * image.height
    if limit is not None and pixels > limit:
        image.close()
        raise _over_pixel_limit(path, pixels, limit)
    return image


def integer_bit_depth() -> int | None:
    """The bit depth integer grayscale images over 8 bits are read at; None: per image.

    ``$CONTRASTIVE_BIT_DEPTH`` (8 to 32; unset or ``auto``: the per-image rule of
    :func:`_rescale_to_8bit`).

    Raises:
        ContrastiveError: If the variable is neither a whole number from 8 to 32 nor ``auto``.
    """
    raw = os.environ.get(BIT_DEPTH_VARIABLE, "").strip()
    if raw.lower() in ("", "auto"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 8 <= value <= 32:
        raise ContrastiveError(
            f"{BIT_DEPTH_VARIABLE}={raw!r} is not a bit depth: give a whole number from 8 to "
            "32 (12 for a 12-bit sensor), or 'auto'"
        )
    return value


def decoding_settings() -> str:
    """The settings that change what a file decodes to (a cache of decoded images must
    be rebuilt when they change): the pixel limit and the bit depth."""
    return f"max_pixels={max_image_pixels()} bit_depth={integer_bit_depth()}"


def max_image_pixels() -> int | None:
    """The largest image, in pixels, that :func:`open_image` reads; None for no limit.

    ``$CONTRASTIVE_MAX_IMAGE_PIXELS`` when set (``0`` or ``none`` for no limit), so a CLI
    user can allow 100 MP photos or panoramas; otherwise ``PIL.Image.MAX_IMAGE_PIXELS``
    (89,478,485 unless changed in Python).

    Raises:
        ContrastiveError: If the variable is neither a whole number >= 0 nor ``none``.
    """
    raw = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not raw:
        return Image.MAX_IMAGE_PIXELS
    if raw.lower() == "none":
        return None
    try:
        value = int(raw.replace(",", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise ContrastiveError(
            f"{MAX_PIXELS_VARIABLE}={raw!r} is not a pixel count: give a whole number "
            "such as 200000000, or 0 or 'none' for no limit"
        )
    return value or None


def _over_pixel_limit(
    path: str | os.PathLike, pixels: int | None, limit: int | None
) -> Image.DecompressionBombError:
    """The one error for an image over the pixel limit (PIL's type, so callers skip it)."""
    if pixels is not None:
        count = f"{pixels} pixels"
    else:
        count = f"more than {2 * limit} pixels" if limit else "too many pixels"
    return Image.DecompressionBombError(
        f"{Path(path).name} has {count}, over the limit of {limit} "
        f"(set {MAX_PIXELS_VARIABLE} to a larger pixel count, or to 0 for no limit, to read it)"
    )


def to_rgb(image: Image.Image, background: str = "white") -> Image.Image:
    """Converts a decoded PIL image of any mode to 8-bit RGB.

    Transparent pixels (alpha channel or a ``transparency`` colour/palette entry) are
    composited onto ``background`` (see :func:`load_rgb`); 16-bit, 32-bit and float
    grayscale is rescaled, not clipped (rule: :func:`_rescale_to_8bit`).
    """
    if background not in _BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(_BACKGROUNDS)}, got {background!r}")
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return _rescale_to_8bit(image).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        colour = _WHITE if background == "white" else _opaque_mean(image)
        flat = Image.new("RGB", image.size, colour)
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def _opaque_mean(image: Image.Image) -> tuple[int, int, int]:
    """The alpha-weighted mean colour of an RGBA image (white if nothing is visible)."""
    pixels = np.asarray(image, dtype=np.float64)
    weights = pixels[..., 3] / 255.0
    total = weights.sum()
    if total == 0:
        return _WHITE
    mean = (pixels[..., :3] * weights[..., None]).sum(axis=(0, 1)) / total
    return (int(round(mean[0])), int(round(mean[1])), int(round(mean[2])))


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    """Maps a high-bit-depth grayscale image onto 0..255 (8-bit mode ``L``).

    Files rarely say how many of their bits are used (a 12-bit sensor writes 16-bit PNGs
    holding 0..4095), so the range is inferred from the pixels, by one rule:

    * Integer modes (``I;16*``, ``I``) with values in 0..65535 scale by the smallest common
      bit depth holding the image's maximum: 8, 10, 12, 14 or 16 bits, ``v * 255 / (2**bits
      - 1)``. Images of one sensor thus share one scale (a 12-bit image stays 12-bit
      whatever its content), and 8-bit data stored in 16 bits keeps its values. The cost:
      an image far darker than its depth (a 16-bit frame whose maximum is under 16384) is
      read at the lower depth, brighter than its siblings (two 12-bit frames with maxima
      1,000 and 1,100 came out at mean levels 145 and 36): set ``$CONTRASTIVE_BIT_DEPTH``
      (:func:`integer_bit_depth`) to read every integer image at one depth.
    * Float mode ``F`` with every finite value in [0, 1] (the usual float convention)
      scales by 255.
    * Anything else (floats outside [0, 1], negative or over-16-bit integers) is stretched
      from the image's own minimum to its maximum; a constant image keeps its value,
      clipped to 0..255. NaN becomes 0, infinities the ends of the range.
    """
    array = np.asarray(image, dtype=np.float64)
    # Only floats can hold NaN or infinities; integer images skip the masked copy.
    finite = array[np.isfinite(array)] if image.mode == "F" else array
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    fixed = integer_bit_depth() if image.mode != "F" else None
    if fixed is not None:
        scaled = array * (255.0 / (2**fixed - 1))  # values over the depth clip to white
    elif image.mode != "F" and low >= 0 and high <= 65535:
        bits = next(depth for depth in _INTEGER_DEPTHS if high <= 2**depth - 1)
        scaled = array * (255.0 / (2**bits - 1))
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = array * 255.0
    elif high > low:
        scaled = (array - low) * (255.0 / (high - low))
    else:
        scaled = array
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), mode="L")


def check_readable(
    paths: Iterable[str | os.PathLike],
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    *,
    decode: bool = False,
) -> tuple[list[Path], dict[Path, str]]:
    """Finds the files that cannot be read as images, failing if there are too many.

    The check opens each file and runs ``Image.verify``: headers are parsed and PNG
    checksums read, but pixels are not decoded, so a truncated JPEG body passes here and is
    skipped later by :class:`ImageDataset`. Pass ``decode=True`` to decode every file fully
    (about 80x slower on photos) and catch those too.

    Args:
        paths: Image files, e.g. ``ImageFolder.paths``.
        max_bad_fraction: Largest tolerated fraction of unreadable files, in ``[0, 1]``.
        decode: Decode every pixel instead of only verifying the file structure.

    Returns:
        ``(good_paths, skipped)``: the readable paths in input order, and the unreadable
        ones in input order, each mapped to a one-line reason. Iterating ``skipped`` yields
        the paths, ready to be written one per line to a ``skipped_files.txt``.

    Raises:
        ContrastiveError: If ``max_bad_fraction`` is outside ``[0, 1]``, ``paths`` is empty,
            no file is readable, or more than ``max_bad_fraction`` of them are unreadable.
    """
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ContrastiveError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
    good: list[Path] = []
    skipped: dict[Path, str] = {}
    for path in map(Path, paths):
        reason = _unreadable_reason(path, decode=decode)
        if reason is None:
            good.append(path)
        else:
            skipped[path] = reason
    total = len(good) + len(skipped)
    if total == 0:
        raise ContrastiveError("no image files to check")
    check_bad_fraction(total, skipped, max_bad_fraction)
    if skipped:
        warnings.warn(
            f"skipping {len(skipped)} of {total} images that cannot be read: {_examples(skipped)}",
            stacklevel=2,
        )
    return good, skipped


def sample_paths(paths: Sequence[Path], max_images: int, seed: int = 0) -> list[Path]:
    """A seeded random sample of at most ``max_images`` of ``paths``, in their order.

    Samples of one seed are nested: the sample of ``k`` images holds that of any smaller
    ``k`` (both are prefixes of one seeded permutation), so a later, longer run reuses
    what a shorter one chose.
    """
    if max_images >= len(paths):
        return list(paths)
    chosen = np.random.default_rng(seed).permutation(len(paths))[:max_images]
    return [paths[i] for i in np.sort(chosen)]


def check_bad_fraction(
    total: int, skipped: Mapping[Path, str], max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
) -> None:
    """Fails when none, or more than ``max_bad_fraction``, of ``total`` images are unreadable.

    Args:
        total: Images looked at, the unreadable ones included.
        skipped: The unreadable ones, each mapped to a one-line reason.
        max_bad_fraction: Largest tolerated fraction of unreadable files, in ``[0, 1]``.

    Raises:
        ContrastiveError: Naming the first few bad files and their reasons (every one is
            logged at DEBUG, which ``-v`` shows: a refused run writes no list of them).
    """
    if skipped and len(skipped) >= total:
        problem = f"none of the {total} images can be read, e.g. "
    elif len(skipped) > max_bad_fraction * total:
        problem = (
            f"{len(skipped)} of {total} images ({len(skipped) / total:.1%}) cannot be read, "
            f"more than --max-bad-fraction {max_bad_fraction:g} (max_bad_fraction) allows: "
        )
    else:
        return
    for path, reason in skipped.items():
        log.debug("cannot read %s (%s)", path, reason)
    all_of_them = f" (-v lists all {len(skipped)})" if len(skipped) > _EXAMPLES_SHOWN else ""
    raise ContrastiveError(problem + _examples(skipped) + all_of_them)


def _unreadable_reason(path: Path, *, decode: bool) -> str | None:
    """Returns why ``path`` cannot be read as an image, or None if it can."""
    try:
        if decode:
            load_rgb(path)
        else:
            with open_image(path) as image:
                image.verify()
    except ContrastiveError:
        raise  # a bad setting (the pixel limit variable), not a bad file
    # PIL's plugins raise a wide, undocumented range of exceptions on malformed data.
    except Exception as error:  # noqa: BLE001
        return describe_error(error)
    return None


def describe_error(error: BaseException) -> str:
    """One line naming the error type and its message (the reason in ``skipped_files.txt``)."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _examples(skipped: Mapping[Path, str]) -> str:
    """The first few bad files with their reasons, as one line."""
    shown = [f"{path} ({reason})" for path, reason in list(skipped.items())[:_EXAMPLES_SHOWN]]
    more = len(skipped) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more else "")


def class_of(path: Path, root: Path) -> str | None:
    """Returns the first folder below ``root`` that contains ``path``, or None if flat."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


@dataclass
class ImageFolder:
    """The sorted image files of a folder, with class labels derived on request.

    Attributes:
        root: The scanned folder.
        paths: Absolute paths of the image files, sorted by relative path.
    """

    root: Path
    paths: list[Path] = field(default_factory=list)

    @classmethod
    def scan(cls, root: str | os.PathLike) -> ImageFolder:
        """Scans ``root`` recursively; raises a clear error if it holds no images."""
        root_path = Path(root).expanduser().absolute()
        paths = list_images(root_path)
        if not paths:
            raise ContrastiveError(
                f"no images found in {root_path} (looked for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}, recursively)"
            )
        log.info("found %d images in %s", len(paths), root_path)
        return cls(root=root_path, paths=paths)

    def __len__(self) -> int:
        return len(self.paths)

    def relative_paths(self) -> list[str]:
        """Paths relative to the root, POSIX style."""
        return [relative_key(p, self.root) for p in self.paths]

    def labels(self) -> tuple[np.ndarray, list[str]]:
        """Integer labels from the first folder level (-1 for files directly in root).

        Returns:
            ``(labels, classes)``: an int64 array with one label per path and the sorted
            class names the labels index into.
        """
        names = [class_of(p, self.root) for p in self.paths]
        classes = sorted({n for n in names if n is not None})
        index = {name: i for i, name in enumerate(classes)}
        labels = np.array([index[n] if n is not None else -1 for n in names], dtype=np.int64)
        return labels, classes


class ImageDataset(torch.utils.data.Dataset):
    """Decodes the images of an :class:`ImageFolder` and applies a transform.

    Files that fail to decode are skipped with a warning naming them: the sample is
    replaced by the next readable one, so an epoch never stops on a bad file. Skipped files
    are kept in :attr:`skipped`, each mapped to its one-line reason (per worker process),
    and a skipped file is not decoded again. Worker processes share nothing with the main
    one, so each skip is also appended to ``skip_log`` (one ``path<TAB>reason`` line), which
    the main process reads (:func:`read_skip_log`). Errors raised by the transform are not
    caught: they are bugs.

    Args:
        paths: Image files.
        transform: Callable applied to the RGB ``PIL.Image``.
        labels: Optional labels, one per path; ``-1`` when absent.
        min_side: Large JPEGs may decode at reduced scale down to this short side (see
            :func:`load_rgb`); None decodes every image whole.
        max_bad_fraction: Stop as soon as this process alone has skipped more than this
            fraction of all ``paths`` (then the folder surely has too many bad files); None
            never stops.
        skip_log: File the skipped paths are appended to; None keeps them in memory only.

    Raises:
        ContrastiveError: From indexing, if no file at all can be decoded, or more than
            ``max_bad_fraction`` of the files cannot be.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        transform: Callable[[Image.Image], object] | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        min_side: int | None = None,
        max_bad_fraction: float | None = None,
        skip_log: str | os.PathLike | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.transform = transform
        self.min_side = min_side
        self.max_bad_fraction = max_bad_fraction
        self.skip_log = Path(skip_log) if skip_log is not None else None
        self.labels = (
            np.asarray(labels, dtype=np.int64)
            if labels is not None
            else np.full(len(self.paths), -1, dtype=np.int64)
        )
        if len(self.labels) != len(self.paths):
            raise ContrastiveError(f"got {len(self.labels)} labels for {len(self.paths)} images")
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[object, int, int]:
        for attempt in range(len(self.paths)):
            i = (index + attempt) % len(self.paths)
            path = self.paths[i]
            if str(path) in self.skipped:
                continue
            try:
                image = load_rgb(path, min_side=self.min_side)
            except ContrastiveError:
                raise  # a bad setting (the pixel limit variable), not a bad file
            # PIL's plugins raise a wide, undocumented range of exceptions on malformed data;
            # any of them means this file is unusable, not that the epoch should stop.
            except Exception as error:  # noqa: BLE001
                reason = describe_error(error)
                self.skipped[str(path)] = reason
                warnings.warn(f"skipping unreadable image {path}: {reason}", stacklevel=2)
                self._record_skip(path, reason)
                continue
            sample = self.transform(image) if self.transform is not None else image
            return sample, int(self.labels[i]), i
        first = next(iter(self.skipped.items()), None)
        raise ContrastiveError(
            f"none of the {len(self.paths)} images can be decoded"
            + (f", e.g. {first[0]} ({first[1]})" if first else "")
        )

    def _record_skip(self, path: Path, reason: str) -> None:
        """Appends a skip to ``skip_log``; stops once the bad files are surely too many."""
        if self.skip_log is not None:
            # One short append per line: whole lines even with several workers writing.
            with open(self.skip_log, "a", encoding="utf-8", errors="surrogateescape") as log:
                log.write(f"{_one_field(str(path))}\t{_one_field(reason)}\n")
        total = len(self.paths)
        if self.max_bad_fraction is not None and len(self.skipped) > self.max_bad_fraction * total:
            skipped = {Path(name): why for name, why in self.skipped.items()}
            raise ContrastiveError(
                f"at least {len(skipped)} of {total} images "
                f"({len(skipped) / total:.1%}) cannot be decoded, more than "
                f"--max-bad-fraction {self.max_bad_fraction:g} (max_bad_fraction) allows: "
                f"{_examples(skipped)}"
            )


def _one_field(text: str) -> str:
    """``text`` without the tabs and newlines that separate the skip log's fields."""
    return text.replace("\t", " ").replace("\n", " ")


def read_skip_log(path: str | os.PathLike) -> dict[Path, str]:
    """The skips :class:`ImageDataset` appended to ``path`` ({} if there is none)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return {}
    skipped = {}
    for line in text.splitlines():
        name, _, reason = line.partition("\t")
        if name:
            skipped[Path(name)] = reason
    return skipped


# Truncated files raise instead of silently producing half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False
