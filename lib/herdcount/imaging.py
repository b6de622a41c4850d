"""Decode and encode photos: bytes in, arrays out (and back), with clear errors."""

from __future__ import annotations

import io
import warnings

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from herdcount.records import TaskError

# A 5616x3744 photo is 21 MP; Pillow's bomb guard starts warning at 89 MP, which is fine,
# but a hostile file could still claim billions of pixels: keep the guard, at 4x that.
Image.MAX_IMAGE_PIXELS = 4 * 89_478_485


class PhotoError(ValueError):
    """A photo could not be used; the message names the file and what is wrong.

    Parameters
    ----------
    file : str
        The file as messages name it (``Test/12.jpg``).
    reason : str
        What is wrong, without the file's name.
    """

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(str(TaskError(item="", file=file, reason=reason)))
        self.file = file
        self.reason = reason

    def __reduce__(self):
        return type(self), (self.file, self.reason)


def decode_rgb(data: bytes, name: str = "<bytes>", *, out: np.ndarray | None = None) -> np.ndarray:
    """Decode image bytes into an (H, W, 3) uint8 RGB array.

    Parameters
    ----------
    data : bytes
        The encoded image.
    name : str, optional
        The file name used in error messages.
    out : (H, W, 3) uint8 array, optional
        Where to decode a JPEG of exactly this shape (see :func:`jpeg_shape`), sparing the
        allocation of a new array; other images are decoded into a new array.

    Raises
    ------
    PhotoError
        If the bytes are empty, not an image, or a truncated or corrupt image.
    """
    if not data:
        raise PhotoError(name, "empty file")
    if simplejpeg.is_jpeg(data):
        # libjpeg-turbo straight into numpy: 3-4x faster than Pillow's decode, convert and
        # copy. On any complaint (strict mode rejects truncated files) Pillow decides and
        # words the error.
        try:
            if (
                out is not None
                and out.dtype == np.uint8
                and out.flags.c_contiguous
                and out.shape == jpeg_shape(data)
            ):
                return simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:
            pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError:
        raise PhotoError(name, "not an image (Pillow cannot identify the format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise PhotoError(name, f"truncated or corrupt image ({exc})") from None


def jpeg_shape(data: bytes) -> tuple[int, int, int] | None:
    """``(H, W, 3)`` of the RGB array a JPEG decodes to, from its header; None for
    anything else, a JPEG with an unreadable header included."""
    if not data or not simplejpeg.is_jpeg(data):
        return None
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
    except ValueError:
        return None
    return (height, width, 3)


def image_shape(data: bytes) -> tuple[int, int, int] | None:
    """``(H, W, 3)`` of an encoded image from its header (any format Pillow reads); None
    where the header cannot be read."""
    shape = jpeg_shape(data)
    if shape is not None:
        return shape
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return (opened.height, opened.width, 3)
    except Exception:
        return None


def decode_rgb_scaled(data: bytes, name: str = "<bytes>", *, scale: float = 1.0) -> np.ndarray:
    """Decode image bytes into an RGB array resized by ``scale``.

    A JPEG is decoded by libjpeg-turbo directly at the smallest of its reduced sizes
    (1/8 steps) that is at least the target, which skips most of the inverse DCT work;
    the rest of the way is an antialiased Pillow resize. Other formats are decoded whole.

    Parameters
    ----------
    data : bytes
        The encoded image.
    name : str, optional
        The file name used in error messages.
    scale : float, optional
        Output size over input size, in (0, 4]; 1 decodes as :func:`decode_rgb`.

    Returns
    -------
    (round(H * scale), round(W * scale), 3) uint8 array

    Raises
    ------
    ValueError
        If ``scale`` is out of range.
    PhotoError
        As :func:`decode_rgb`.
    """
    if not 0 < scale <= 4:
        raise ValueError(f"scale must be in (0, 4], got {scale}")
    if scale == 1:
        return decode_rgb(data, name)
    image, shape = None, jpeg_shape(data)
    if shape is not None:
        target = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
        try:
            image = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=target[0], min_width=target[1])
        except ValueError:
            image = None
    if image is None:
        image = decode_rgb(data, name)
        target = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return _resize_to(image, target)


def resize_rgb(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (antialiased bilinear, as :func:`decode_rgb_scaled`).

    Returns
    -------
    (round(H * scale), round(W * scale), 3) uint8 array

    Raises
    ------
    ValueError
        If ``scale`` is out of (0, 4].
    """
    if not 0 < scale <= 4:
        raise ValueError(f"scale must be in (0, 4], got {scale}")
    target = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return _resize_to(image, target)


def _resize_to(image: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == target:
        return image
    resized = Image.fromarray(image).resize((target[1], target[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an RGB image (float values are clipped to 0..255), chroma 4:2:0 as
    cameras write it."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    image = np.ascontiguousarray(image)
    return simplejpeg.encode_jpeg(image, quality=int(quality), colorspace="RGB", colorsubsampling="420")
