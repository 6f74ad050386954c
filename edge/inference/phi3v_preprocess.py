"""Phi-3.5-vision image preprocessing (the "HD transform"), in numpy, for ONNX Runtime GenAI.

Why our own: ORT GenAI 0.18's processor ignores `num_crops` and always cuts a frame into up to 16
crops (1.5k-2.5k image tokens), which dominates prefill on a small board; and its image decoder
must never see camera bytes (garbage kills the process, a truncated JPEG hangs it). So frames arrive
here as validated uint8 arrays and leave as the tensors the phi3v vision model takes.

Exactness: at num_crops=16 the result matches the runtime's own processor pixel for pixel. That
processor (onnxruntime-extensions Phi3ImageTransform) resamples with a port of Pillow's
convolution resampler: bilinear on 8-bit RGB for the HD resize (22-bit fixed-point weights, horizontal
pass then vertical, each rounded and clipped to 8 bits), bicubic on float32 planes for the 336x336
global view. Both are reproduced below operation for operation; numpy does the arithmetic in the
same types, so the floats come out bit-identical.

This module imports no runtime; ort_genai.py turns the arrays into og.NamedTensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CROP = 336
TOKENS_PER_CROP = 144
MAX_CROPS = 16  # what ORT GenAI's own processor always uses
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

_NORM_LUT = (np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0) - MEAN[:, None]) / STD[:, None]
_PRECISION_BITS = 32 - 8 - 2
_HALF = 1 << (_PRECISION_BITS - 1)


def image_token_count(height: int, width: int) -> int:
    """Image tokens for an HD image of height x width (multiples of 336): the runtimes' formula.

    144 per crop plus the global crop, one separator, and 12 newline tokens per crop row plus one row.
    """
    hc, wc = height // CROP, width // CROP
    return (hc * wc + 1) * TOKENS_PER_CROP + 1 + (hc + 1) * 12


def hd_size(height: int, width: int, num_crops: int) -> tuple[int, int, int, int]:
    """(resized_h, resized_w, padded_h, padded_w) of the HD transform for a height x width frame.

    The largest scale whose crop grid fits num_crops; the long side becomes scale*336 and the short
    side keeps the aspect ratio, then is padded (white, centred) up to a multiple of 336.
    """
    if not 1 <= num_crops <= MAX_CROPS:
        raise ValueError(f"num_crops must be 1..{MAX_CROPS}, got {num_crops}")
    ratio = width / height if width >= height else height / width
    scale = 1
    while scale * math.ceil(scale / ratio) <= num_crops:
        scale += 1
    scale -= 1
    long_side = scale * CROP
    # The runtimes would produce an empty image for a sliver frame (ratio > 336): keep one row.
    short_side = max(1, int(long_side / ratio))
    new_w, new_h = (long_side, short_side) if width >= height else (short_side, long_side)
    pad_h = math.ceil(new_h / CROP) * CROP
    pad_w = math.ceil(new_w / CROP) * CROP
    return new_h, new_w, pad_h, pad_w


def tokens_for_frame(height: int, width: int, num_crops: int) -> int:
    _, _, pad_h, pad_w = hd_size(height, width, num_crops)
    return image_token_count(pad_h, pad_w)


# ----------------------------------------------------------------------------- Pillow resampling


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@dataclass(frozen=True)
class _Coeffs:
    index: np.ndarray  # [out, ksize] source positions (clamped; weight 0 where unused)
    weight: np.ndarray  # [out, ksize] float64, normalised per output


def _coeffs(in_size: int, out_size: int, filt: Callable[[np.ndarray], np.ndarray], support: float) -> _Coeffs:
    """Pillow's precompute_coeffs: a filter widened by the downscale factor, normalised per pixel."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C casts truncate
    xmax = np.minimum((center + support + 0.5).astype(np.int64), in_size) - xmin
    x = np.arange(ksize)
    w = filt((x[None, :] + xmin[:, None] - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(x[None, :] < xmax[:, None], w, 0.0)
    total = np.zeros(out_size)
    for j in range(ksize):  # sequential, like the C loop, so the sum has the same rounding
        total = total + w[:, j]
    w = np.divide(w, total[:, None], out=w.copy(), where=total[:, None] != 0.0)
    index = np.minimum(xmin[:, None] + x[None, :], in_size - 1)
    return _Coeffs(index, w)


def _trim(c: _Coeffs) -> _Coeffs:
    """Drop trailing taps that are zero for every output (upscaling leaves one): less work, same sums."""
    used = np.nonzero(c.weight.any(axis=0))[0]
    k = int(used.max()) + 1 if used.size else 1
    return _Coeffs(c.index[:, :k], c.weight[:, :k])


def _fixed_point(w: np.ndarray) -> np.ndarray:
    scaled = w * (1 << _PRECISION_BITS)
    return np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)


def _resample_u8_axis(img: np.ndarray, c: _Coeffs, axis: int) -> np.ndarray:
    """One 8-bit pass along `axis` of a uint8 array, in 22-bit fixed point like Pillow.

    int32 is exact here: bilinear weights are positive and sum to 2**22, so a sum stays below
    255 * 2**22 + 2**21 < 2**31.
    """
    c = _trim(c)
    k = _fixed_point(c.weight)
    out_shape = list(img.shape)
    out_shape[axis] = c.index.shape[0]
    acc = np.full(out_shape, _HALF, np.int32)
    shape = [1] * img.ndim
    shape[axis] = -1
    for j in range(c.index.shape[1]):
        acc += np.take(img, c.index[:, j], axis=axis) * k[:, j].reshape(shape)
    np.right_shift(acc, _PRECISION_BITS, out=acc)
    return np.clip(acc, 0, 255).astype(np.uint8)


def _resample_f32_axis(img: np.ndarray, c: _Coeffs, axis: int) -> np.ndarray:
    """One float pass along `axis` of a float32 array, accumulating in double like Pillow."""
    c = _trim(c)
    out_shape = list(img.shape)
    out_shape[axis] = c.index.shape[0]
    acc = np.zeros(out_shape, np.float64)
    shape = [1] * img.ndim
    shape[axis] = -1
    for j in range(c.index.shape[1]):  # taps in order: the same double rounding as the C loop
        acc += np.take(img, c.index[:, j], axis=axis) * c.weight[:, j].reshape(shape)
    return acc.astype(np.float32)


def resize_bilinear_u8(rgb: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Pillow-exact Image.resize(BILINEAR) of an HxWx3 uint8 array (antialiased when shrinking)."""
    h, w = rgb.shape[:2]
    out = rgb
    if out_w != w:
        out = _resample_u8_axis(out, _coeffs(w, out_w, _bilinear, 1.0), axis=1)
    if out_h != h:
        out = _resample_u8_axis(out, _coeffs(h, out_h, _bilinear, 1.0), axis=0)
    return out


def resize_bicubic_f32(planes: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Pillow-exact bicubic resize of float32 planes (mode "F"): [..., H, W] -> [..., out_h, out_w]."""
    h, w = planes.shape[-2:]
    out = planes
    if out_w != w:
        out = _resample_f32_axis(out, _coeffs(w, out_w, _bicubic, 2.0), axis=planes.ndim - 1)
    if out_h != h:
        out = _resample_f32_axis(out, _coeffs(h, out_h, _bicubic, 2.0), axis=planes.ndim - 2)
    return out


# ----------------------------------------------------------------------------- the transform


@dataclass(frozen=True)
class HDImage:
    """One frame after the HD transform, ready for the vision model."""

    pixel_values: np.ndarray  # [num_crops + 1, 3, 336, 336] float32: global view, crops, zero padding
    size: tuple[int, int]  # padded (height, width), multiples of 336
    num_tokens: int


def hd_transform(bgr: np.ndarray, num_crops: int) -> HDImage:
    """HD transform of one validated uint8 HxWx3 BGR frame (OpenCV order; converted to RGB here)."""
    h, w = int(bgr.shape[0]), int(bgr.shape[1])
    new_h, new_w, pad_h, pad_w = hd_size(h, w, num_crops)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    resized = resize_bilinear_u8(rgb, new_h, new_w)
    padded = np.full((pad_h, pad_w, 3), 255, np.uint8)
    top = (pad_h - new_h) // 2
    left = (pad_w - new_w) // 2
    padded[top : top + new_h, left : left + new_w] = resized
    # [3, H, W] float32, normalised through a per-channel table: the same float32 arithmetic as
    # (v / 255 - mean) / std for each of the 256 values, at the cost of one gather
    planes = np.stack([_NORM_LUT[ch][padded[:, :, ch]] for ch in range(3)])
    pv = np.zeros((num_crops + 1, 3, CROP, CROP), np.float32)
    pv[0] = resize_bicubic_f32(planes, CROP, CROP)  # the global view
    hc, wc = pad_h // CROP, pad_w // CROP
    crops = planes.reshape(3, hc, CROP, wc, CROP).transpose(1, 3, 0, 2, 4).reshape(-1, 3, CROP, CROP)
    pv[1 : 1 + len(crops)] = crops
    return HDImage(pixel_values=pv, size=(pad_h, pad_w), num_tokens=image_token_count(pad_h, pad_w))


@dataclass(frozen=True)
class VisionInputs:
    """The named inputs of ORT GenAI's phi3v model for one prompt with n images."""

    input_ids: np.ndarray  # [1, L] int32; image positions are negative (-1 for image 1, -2 for 2...)
    pixel_values: np.ndarray  # [n, num_crops + 1, 3, 336, 336] float32
    image_sizes: np.ndarray  # [n, 2] int64 (height, width)
    num_image_tokens: np.ndarray  # [n, 1] int64 (the shape ORT GenAI's own processor produces)

    @property
    def image_tokens(self) -> int:
        return int(self.num_image_tokens.sum())


def build_input_ids(
    pieces: Sequence[str | int], encode: Callable[[str], Sequence[int]], image_tokens: Sequence[int]
) -> np.ndarray:
    """Token ids for a prompt split into text and image slots (int = 0-based image index).

    Text pieces are encoded one by one and each image slot becomes `image_tokens[i]` copies of
    -(i + 1), the placeholders the phi3v embedding model replaces with image features.
    """
    out: list[np.ndarray] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(np.asarray(encode(piece), np.int32).reshape(-1))
        else:
            if not 0 <= piece < len(image_tokens):
                raise ValueError(f"image slot {piece + 1} has no image ({len(image_tokens)} given)")
            out.append(np.full(image_tokens[piece], -(piece + 1), np.int32))
    ids = np.concatenate(out) if out else np.zeros(0, np.int32)
    return ids[None, :]


def prepare(
    images: Sequence[np.ndarray],
    num_crops: int,
    pieces: Sequence[str | int],
    encode: Callable[[str], Sequence[int]],
) -> VisionInputs:
    """All phi3v inputs for validated BGR frames and a prompt split by image slots."""
    hd = [hd_transform(img, num_crops) for img in images]
    counts = [h.num_tokens for h in hd]
    ids = build_input_ids(pieces, encode, counts)
    if hd:
        pv = np.stack([h.pixel_values for h in hd])
        sizes = np.array([h.size for h in hd], np.int64)
    else:
        pv = np.zeros((0, num_crops + 1, 3, CROP, CROP), np.float32)
        sizes = np.zeros((0, 2), np.int64)
    return VisionInputs(ids, pv, sizes, np.array(counts, np.int64).reshape(-1, 1))
