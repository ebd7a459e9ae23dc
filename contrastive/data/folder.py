"""Image folders: finding images recursively, decoding any mode to RGB, optional labels.

Training needs no labels, so nothing here is sized by the number of folders. Labels are
derived only on request (evaluation), from the first folder level below the root.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from contrastive.errors import ContrastiveError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

# Background colour used when flattening transparent images: white, as image viewers do.
_BACKGROUND = (255, 255, 255)


def list_images(root: str | os.PathLike) -> list[Path]:
    """Lists every image file below ``root``, recursively, sorted by relative path.

    Symbolic links to files are followed; symbolic links to directories are not, so link
    loops cannot hang the scan. Directories whose names look like images are ignored.

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
    for dirpath, _dirnames, filenames in os.walk(root_path, onerror=_warn_walk_error):
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = Path(dirpath) / name
                if path.is_file():
                    found.append(path.absolute())
    found.sort(key=lambda p: _relative_key(p, root_path))
    return found


def _relative_key(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root.absolute()).as_posix()
    except ValueError:
        return path.as_posix()


def _warn_walk_error(error: OSError) -> None:
    warnings.warn(f"cannot read folder {error.filename}: {error.strerror}", stacklevel=2)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decodes an image file of any mode into an 8-bit RGB image.

    EXIF orientation is applied; transparency is composited onto white; 16-bit and float
    images are rescaled to 0..255; CMYK, palette and grayscale images are converted.

    Args:
        path: Image file.

    Returns:
        A fully loaded RGB ``PIL.Image``.

    Raises:
        OSError, ValueError, Image.DecompressionBombError: If the file cannot be decoded.
    """
    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts a decoded PIL image of any mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        array = np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in ("LA", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, _BACKGROUND)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


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
        return [_relative_key(p, self.root) for p in self.paths]

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
    replaced by the next readable one, so an epoch never stops on a bad file. The names of
    skipped files are kept in :attr:`skipped` (per worker process).

    Args:
        paths: Image files.
        transform: Callable applied to the RGB ``PIL.Image``.
        labels: Optional labels, one per path; ``-1`` when absent.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        transform: Callable[[Image.Image], object] | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.labels = (np.asarray(labels, dtype=np.int64) if labels is not None
                       else np.full(len(self.paths), -1, dtype=np.int64))
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[object, int, int]:
        for attempt in range(len(self.paths)):
            i = (index + attempt) % len(self.paths)
            try:
                image = load_rgb(self.paths[i])
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                if str(self.paths[i]) not in self.skipped:
                    self.skipped.add(str(self.paths[i]))
                    warnings.warn(f"skipping unreadable image {self.paths[i]}: {error}",
                                  stacklevel=2)
                continue
            sample = self.transform(image) if self.transform is not None else image
            return sample, int(self.labels[i]), i
        raise ContrastiveError("none of the images could be decoded")


# Truncated files raise instead of silently producing half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False
