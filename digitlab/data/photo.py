"""A person's own digit, as a file (PNG or JPEG, any size, dark ink on light paper or the reverse, colour or
grey), made into an image the way the dataset's images were made, so that a model trained on them can read it.

MNIST's recipe (LeCun et al.): grey levels; the digit's bounding box scaled, keeping its aspect ratio, so that
its longer side is 20 pixels (anti-aliased, hence the grey edges); placed in the 28x28 field with its centre of
mass at the centre (pixel 14.0, 14.0, as measured on MNIST's test set; here to a fraction of a pixel). The
background is read from the image's border (light paper is inverted), faint noise (paper texture, JPEG ringing)
is dropped before the box is found, and the ink is scaled to the range 0..1. A page lit unevenly (a lighting
gradient, a shadow over one edge: parts of the border differ) is evened out first, as document scanners do: the
background is what a morphological opening keeps (strokes narrower than a third of the image vanish from it; a
gradient, a wide shadow or one that runs along an edge stays) and is taken away, and on light paper the ink is
divided by the paper's local brightness, so strokes in the shade count as much as those in the light. A shadow
it cannot tell from a stroke (a narrow one reaching in from an edge) leaves ink along that edge: a warning. The
8x8 digits get theirs: the digit's box filling a 32x32 bitmap, centred by mass, then the share of ink in each 4x4
block (UCI's optdigits); any other size the box scaled to fill the image, centred.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from digitlab.errors import DataError
from digitlab.options import size_text

MAX_BYTES = 64 << 20
MAX_PIXELS = 64_000_000
WORKING_SIDE = 1024  # larger images are reduced to this (longer side) before anything else
MIN_CONTRAST = 0.15  # ink must differ from the background by this much (of the full grey range)
NOISE = 0.12  # ink fainter than this (after scaling the darkest stroke to 1) is background
MNIST_BOX = 20  # MNIST's digits: the longer side of their box, in the 28x28 field
UNEVEN = 0.08  # parts of the border whose levels differ by more than this: the page is lit unevenly
BORDER_PARTS = 4  # each side of the border is cut into this many parts, compared by their medians
OPENING = 3  # the background's opening is a square of a third of the image's shorter side
EVEN_SIDE = 256  # an unevenly lit image is reduced to this (longer side) to be evened out: ample for 28x28 and 8x8
EDGE_INK = 0.05  # after evening out, ink along more than this share of a side: a shadow probably remains


def read_grey(path: str | Path) -> np.ndarray:
    """The image at `path` as grey levels (H, W) in [0, 1], white 1. DataError (one line) for a file that is
    missing, empty, not an image, damaged, or over MAX_PIXELS."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected an image file")
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file, not an image")
    if size > MAX_BYTES:
        raise DataError(f"{path}: {size_text(size)}; the largest image digitlab reads is {size_text(MAX_BYTES)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                w, h = image.size
                if w * h > MAX_PIXELS:
                    raise DataError(f"{path}: {w}x{h} pixels ({w * h / 1e6:.3g} megapixels); the largest image "
                                    f"digitlab reads is {MAX_PIXELS / 1e6:.0f} megapixels: scale it down first")
                image.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decode at a reduced size when large
                grey = _grey(ImageOps.exif_transpose(image))
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image that can be read (PNG or JPEG expected)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own limit, lower down
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.3g} megapixels" if pixels else "too many pixels"
        raise DataError(f"{path}: {size}; the largest image digitlab reads is {MAX_PIXELS / 1e6:.0f} megapixels: "
                        f"scale it down first") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: damaged or truncated image ({exc})") from None
    return grey


def _grey(image) -> np.ndarray:
    """Grey levels of a Pillow image in [0, 1], reduced to WORKING_SIDE. Transparency is flattened onto a
    background that contrasts with the strokes (dark strokes on white, light ones on black)."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(image, dtype=np.float64)
        a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
        image = Image.fromarray((a * 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
        grey = np.asarray(rgba.convert("L"), dtype=np.float32) / 255
        strokes = grey[alpha > 0.5]
        background = 1.0 if not len(strokes) or strokes.mean() < 0.5 else 0.0
        image = Image.fromarray(np.uint8(np.round(255 * (grey * alpha + background * (1 - alpha)))), mode="L")
    else:
        image = image.convert("L")
    if max(image.size) > WORKING_SIDE:
        image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / 255


def ink(grey: np.ndarray, name: str = "image", warn=None) -> np.ndarray:
    """Ink as 1 on background 0: inverted when the border (the paper) is light, the background subtracted (its
    level, or all of it where the lighting is uneven), the strongest stroke scaled to 1, faint noise set to 0.
    DataError for a blank image (an evenly lit page, or a gradient or shadow with no digit on it). `warn` gets
    a line when an uneven background was evened out but ink still runs along the image's edge."""
    parts = _border_parts(grey)
    uneven = max(parts) - min(parts) > UNEVEN
    paper = float(np.median(_border(grey)))
    # Under uneven light the border's brightest part shows the paper's own colour best: a shadow only darkens.
    light_paper = (max(parts) if uneven else paper) > 0.5
    strokes = 1 - grey if light_paper else grey
    if uneven:
        strokes = _reduced(strokes, EVEN_SIDE)
        background = _opening(strokes, max(3, min(strokes.shape) // OPENING))
        strokes = strokes - background
        if light_paper:  # light falls on ink and paper alike: ink in the shade is as dark, relative to its paper
            strokes = strokes / np.maximum(1 - background, 0.2)
        level = float(np.median(_border(strokes)))
    else:
        level = 1 - paper if light_paper else paper
    contrast = float(strokes.max()) - level
    if contrast < MIN_CONTRAST:
        evened = " once its uneven background is evened out" if uneven else ""
        raise DataError(f"{name}: no digit found: the image is blank (or its ink is too faint){evened}")
    out = np.clip((strokes - level) / contrast, 0, 1)
    out[out < NOISE] = 0
    if uneven and warn is not None:
        edge = max(float((side > 0).mean()) for side in _sides(out))
        if edge > EDGE_INK:
            warn(f"{name}: uneven lighting evened out, but ink still touches {edge:.0%} of an edge of the image: "
                 f"a shadow may remain (or the crop cuts the digit); --explain shows what the model saw")
    return out


def _reduced(a: np.ndarray, side: int) -> np.ndarray:
    """`a` with its longer side reduced to `side` (area-averaged), or as it is when not longer."""
    if max(a.shape) <= side:
        return a
    return _resized(a, side / max(a.shape), "BOX")


def _sides(a: np.ndarray) -> list[np.ndarray]:
    """The image's four edges: top, bottom, left, right."""
    return [a[0], a[-1], a[:, 0], a[:, -1]]


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate(_sides(a))


def _border_parts(grey: np.ndarray) -> list[float]:
    """The medians of the border's parts (BORDER_PARTS on each side): where they differ by more than UNEVEN, the
    page is lit unevenly. A part's median ignores a stroke that crosses less than half of it, so a digit touching
    the edge does not count; a gradient or a shadow over an edge does."""
    return [float(np.median(part)) for side in _sides(grey) for part in np.array_split(side, BORDER_PARTS)
            if len(part)]


def _opening(a: np.ndarray, size: int) -> np.ndarray:
    """The morphological opening of `a` by a square of `size` (made odd): the largest surface under `a` that a
    square of that size can fill. Bright structures narrower than the square (strokes) vanish; a gradient or a
    step wider than it stays exactly, since the image is extended by its edge values first (so a slope keeps
    rising under the square where it meets the border)."""
    k = size | 1
    pad = k - 1
    extended = np.pad(a.astype(np.float32), pad, mode="edge")
    eroded = _running(_running(extended, k, 0, np.minimum), k, 1, np.minimum)
    opened = _running(_running(eroded, k, 0, np.maximum), k, 1, np.maximum)
    return opened[pad:-pad, pad:-pad]


def _running(a: np.ndarray, k: int, axis: int, op) -> np.ndarray:
    """np.minimum or np.maximum over a centred window of k (odd) along `axis`, the ends extended by their own
    values; van Herk and Gil-Werman's blocks make it a few passes whatever k is."""
    a = np.moveaxis(a, axis, -1)
    n, r = a.shape[-1], k // 2
    lead = [(0, 0)] * (a.ndim - 1)
    padded = np.pad(a, lead + [(r, r)], mode="edge")
    blocks = -(-padded.shape[-1] // k)
    fill = np.inf if op is np.minimum else -np.inf
    padded = np.pad(padded, lead + [(0, blocks * k - padded.shape[-1])], constant_values=fill)
    padded = padded.reshape(a.shape[:-1] + (blocks, k))
    ahead = op.accumulate(padded, axis=-1).reshape(a.shape[:-1] + (blocks * k,))  # from each block's start
    behind = op.accumulate(padded[..., ::-1], axis=-1)[..., ::-1].reshape(ahead.shape)  # to each block's end
    return np.moveaxis(op(behind[..., :n], ahead[..., k - 1:k - 1 + n]), -1, axis)


def to_digit(grey: np.ndarray, image_shape: tuple[int, int, int], name: str = "image", warn=None) -> np.ndarray:
    """An image (channels, rows, cols) float32 in [0, 1] from grey levels, as the dataset's images were made;
    `warn` gets a line about an image whose reading is doubtful (see ink)."""
    strokes = ink(grey, name, warn)
    rows, cols = np.flatnonzero(strokes.any(axis=1)), np.flatnonzero(strokes.any(axis=0))
    crop = strokes[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    channels, height, width = image_shape
    if (height, width) == (28, 28):
        out = _mnist(crop)
    elif (height, width) == (8, 8):
        out = _blocks(crop)
    else:  # another size: the box fills the image, centred
        out = _centred(_resized(crop, min(height, width) / max(crop.shape)), (height, width))
    return np.repeat(out[None], channels, axis=0)


def _resized(crop: np.ndarray, scale: float, resample: str = "LANCZOS") -> np.ndarray:
    """The crop scaled by `scale`, aspect kept (at least one pixel each way), clipped to [0, 1]."""
    from PIL import Image

    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (width, height)
    image = Image.fromarray(crop.astype(np.float32), mode="F").resize(size, getattr(Image.Resampling, resample))
    return np.clip(np.asarray(image), 0, 1)


def _centred(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    bh, bw = small.shape
    top, left = (shape[0] - bh) // 2, (shape[1] - bw) // 2
    out[top:top + bh, left:left + bw] = small
    return out


def _mnist(crop: np.ndarray) -> np.ndarray:
    """MNIST: the longer side to 20 pixels, anti-aliased, the centre of mass at (14.0, 14.0) of 28x28."""
    small = _resized(crop, MNIST_BOX / max(crop.shape))
    total = small.sum()
    if total <= 0:
        return _centred(small, (28, 28))
    cy = float(small.sum(axis=1) @ np.arange(small.shape[0]) / total)
    cx = float(small.sum(axis=0) @ np.arange(small.shape[1]) / total)
    return _place(small, 14 - cy, 14 - cx, (28, 28))


def _blocks(crop: np.ndarray) -> np.ndarray:
    """The 8x8 digits (UCI optdigits, scikit-learn's load_digits): the digit's longer side filling a 32x32
    bitmap (area-averaged), its centre of mass at the centre, then the share of ink in each 4x4 block."""
    small = _resized(crop, 32 / max(crop.shape), "BOX")
    total = small.sum()
    cy = float(small.sum(axis=1) @ np.arange(small.shape[0]) / total)
    cx = float(small.sum(axis=0) @ np.arange(small.shape[1]) / total)
    bitmap = _place(small, 15.5 - cy, 15.5 - cx, (32, 32))
    return bitmap.reshape(8, 4, 8, 4).mean(axis=(1, 3)).astype(np.float32)


def _place(small: np.ndarray, top: float, left: float, shape: tuple[int, int]) -> np.ndarray:
    """`small` put into a zero field of `shape` with its top-left corner at the fractional position (top, left),
    kept inside the field; the fraction is spread over two neighbouring pixels (linear interpolation)."""
    bh, bw = small.shape
    top = min(max(top, 0.0), shape[0] - bh)
    left = min(max(left, 0.0), shape[1] - bw)
    padded = np.zeros((bh + 1, bw + 1), dtype=np.float32)
    padded[:bh, :bw] = small
    fy, fx = top - np.floor(top), left - np.floor(left)
    shifted = (1 - fy) * padded + fy * np.roll(padded, 1, axis=0)
    shifted = (1 - fx) * shifted + fx * np.roll(shifted, 1, axis=1)
    out = np.zeros(shape, dtype=np.float32)
    t, le = int(np.floor(top)), int(np.floor(left))
    h, w = min(bh + 1, shape[0] - t), min(bw + 1, shape[1] - le)
    out[t:t + h, le:le + w] = shifted[:h, :w]
    return out
