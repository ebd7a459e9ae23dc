"""A generated folder of hostile image files: every way a real image folder goes wrong."""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# EXIF tag holding the orientation; 6 and 8 mean "rotate 90 degrees to display".
EXIF_ORIENTATION = 0x0112
RED = (255, 0, 0)
BLUE = (0, 0, 255)


@dataclass
class BadImageCorpus:
    """Paths of the generated corpus, grouped by what the toolkit must do with them.

    Attributes:
        root: The corpus folder.
        decodable: Case name -> image-named file that ``load_rgb`` must decode.
        undecodable: Case name -> image-named regular file that cannot be decoded.
        not_listed: Case name -> image-named entry that is not a regular file (a folder, a
            link loop, a dangling link) and must not be listed.
    """

    root: Path
    decodable: dict[str, Path] = field(default_factory=dict)
    undecodable: dict[str, Path] = field(default_factory=dict)
    not_listed: dict[str, Path] = field(default_factory=dict)

    @property
    def image_files(self) -> list[Path]:
        """Every regular image-named file, decodable or not."""
        return [*self.decodable.values(), *self.undecodable.values()]


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    """The JPEG encoding of ``image``."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels.

    Lets tests meet a decompression bomb without allocating one.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0"))
        + png_chunk(b"IEND", b"")
    )


def rotated_photo(orientation: int) -> Image.Image:
    """A 64x32 blue photo whose red corner lands top-left once ``orientation`` is applied.

    Orientation 6 rotates 90 degrees clockwise (stored bottom-left goes top-left);
    orientation 8 rotates counter-clockwise (stored top-right goes top-left).
    """
    image = Image.new("RGB", (64, 32), BLUE)
    corner = {6: (0, 16, 16, 32), 8: (48, 0, 64, 16)}[orientation]
    image.paste(RED, corner)
    return image


def _write_decodable(root: Path, corpus: BadImageCorpus) -> None:
    cases = corpus.decodable

    cases["rgb_jpeg"] = root / "plain.jpg"
    cases["rgb_jpeg"].write_bytes(jpeg_bytes(Image.new("RGB", (8, 6), (10, 200, 30))))

    # Index 0 is transparent red, index 1 opaque green.
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0])
    palette.putpixel((1, 0), 1)
    cases["palette_transparent_png"] = root / "palette.png"
    palette.save(cases["palette_transparent_png"], transparency=0)

    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 255))
    cases["rgba_png"] = root / "rgba.png"
    rgba.save(cases["rgba_png"])

    # An RGB PNG whose colour (10, 20, 30) is declared transparent by a tRNS chunk.
    keyed = Image.new("RGB", (2, 1), (10, 20, 30))
    keyed.putpixel((1, 0), (1, 2, 3))
    cases["rgb_colour_key_png"] = root / "colour key.png"
    keyed.save(cases["rgb_colour_key_png"], transparency=(10, 20, 30))

    # 16-bit values v * 257 must map back to 8-bit v.
    sixteen = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    cases["gray16_png"] = root / "depth16.png"
    Image.fromarray(sixteen).save(cases["gray16_png"])

    cmyk = Image.new("CMYK", (4, 2), (0, 0, 0, 0))
    cmyk.paste((0, 0, 0, 255), (2, 0, 4, 2))
    cases["cmyk_jpeg"] = root / "cmyk.jpg"
    cases["cmyk_jpeg"].write_bytes(jpeg_bytes(cmyk))

    cases["grayscale_jpeg"] = root / "gray.jpg"
    cases["grayscale_jpeg"].write_bytes(jpeg_bytes(Image.new("L", (4, 4), 90)))

    cases["one_pixel_png"] = root / "dot.png"
    Image.new("RGB", (1, 1), (1, 2, 3)).save(cases["one_pixel_png"])

    for orientation in (6, 8):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        path = root / f"rotated{orientation}.jpg"
        path.write_bytes(jpeg_bytes(rotated_photo(orientation), exif=exif.tobytes()))
        cases[f"exif_orientation_{orientation}_jpeg"] = path

    cases["space_in_name"] = root / "holiday photo 1.jpg"
    cases["space_in_name"].write_bytes(jpeg_bytes(Image.new("RGB", (4, 4))))
    cases["non_ascii_name"] = root / "café_日本.png"
    Image.new("RGB", (4, 4)).save(cases["non_ascii_name"])
    # Linux file names are bytes; this one is Latin-1, not UTF-8.
    non_utf8 = os.fsdecode(os.fsencode(root) + b"/caf\xe9.png")
    Image.new("RGB", (4, 4)).save(non_utf8, format="PNG")
    cases["non_utf8_name"] = Path(non_utf8)

    inside = root / "folder.jpg"
    inside.mkdir()
    cases["inside_folder_named_like_image"] = inside / "inner.png"
    Image.new("RGB", (4, 4)).save(cases["inside_folder_named_like_image"])


def _write_undecodable(root: Path, corpus: BadImageCorpus) -> None:
    cases = corpus.undecodable

    cases["zero_bytes"] = root / "empty.jpg"
    cases["zero_bytes"].touch()

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    photo = jpeg_bytes(Image.fromarray(noise))
    cases["truncated_jpeg"] = root / "truncated.jpg"
    cases["truncated_jpeg"].write_bytes(photo[: len(photo) // 2])

    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    cases["truncated_png"] = root / "truncated.png"
    cases["truncated_png"].write_bytes(buffer.getvalue()[: buffer.tell() // 2])

    cases["text_named_jpg"] = root / "notes.jpg"
    cases["text_named_jpg"].write_text("not an image, just notes\n")

    cases["decompression_bomb_png"] = root / "bomb.png"
    cases["decompression_bomb_png"].write_bytes(png_header_only(100_000, 100_000))


def _write_not_listed(root: Path, corpus: BadImageCorpus) -> None:
    cases = corpus.not_listed
    cases["folder_named_like_image"] = root / "folder.jpg"
    cases["folder_link_loop"] = root / "sub" / "loop.png"
    cases["folder_link_loop"].parent.mkdir()
    cases["folder_link_loop"].symlink_to("..", target_is_directory=True)
    cases["file_link_loop"] = root / "self.jpg"
    cases["file_link_loop"].symlink_to("self.jpg")
    cases["dangling_link"] = root / "gone.jpg"
    cases["dangling_link"].symlink_to("missing.jpg")


@pytest.fixture
def bad_image_corpus(tmp_path: Path) -> BadImageCorpus:
    """A folder mixing decodable odd images, undecodable files and non-files."""
    root = tmp_path / "corpus"
    root.mkdir()
    corpus = BadImageCorpus(root=root)
    _write_decodable(root, corpus)
    _write_undecodable(root, corpus)
    _write_not_listed(root, corpus)
    (root / "README.txt").write_text("not image-named: never listed\n")
    return corpus
