"""Geometry and pixels of the synthetic shapes set: outlines, masks, textures, backgrounds.

Everything here is a pure function of its arguments and a ``numpy.random.Generator``, so
the caller (``deepmac_nb.data.shapes``) controls determinism. Coordinates are pixels in
the image frame: ``x`` to the right, ``y`` down, origin at the top-left pixel's corner.
Images are built as ``float32 [H, W, 3]`` RGB in ``[0, 255]`` and quantized by the caller.

Each shape is a list of ``(polygon, fill)`` parts in a canonical unit frame (roughly
``[-1, 1]^2``): parts are filled in order, ``fill=1`` adds area and ``fill=0`` cuts it away,
which is how the ring's hole and the crescent's bite are made.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

# Names of the 8 classes; category id = index + 1. The first four are the mask-labelled
# "seen" split (convex-ish, nearly box/ellipse filling), the last four "unseen": holes,
# concavities and spikes, so a box-shaped or ellipse-shaped mask prior cannot fit them.
SHAPE_CLASSES: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "cross",
    "star",
    "ring",
    "crescent",
    "heart",
)

Parts = list[tuple[np.ndarray, int]]

# Sub-pixel precision for cv2.fillPoly: vertices are scaled by 2**_SHIFT.
_SHIFT = 4


def _circle(radius: float, center=(0.0, 0.0), n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)


def _disc(rng: np.random.Generator) -> Parts:
    return [(_circle(1.0), 1)]


def _square(rng: np.random.Generator) -> Parts:
    h = 0.85  # so a square's area is close to the disc's at the same scale
    return [(np.array([[-h, -h], [h, -h], [h, h], [-h, h]]), 1)]


def _triangle(rng: np.random.Generator) -> Parts:
    angles = np.deg2rad(np.array([-90.0, 30.0, 150.0]) + rng.uniform(-12, 12, size=3))
    return [(np.stack([np.cos(angles), np.sin(angles)], axis=1) * 1.1, 1)]


def _cross(rng: np.random.Generator) -> Parts:
    t = rng.uniform(0.25, 0.4)  # half-thickness of the arms
    pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t)]
    pts += [(-1, t), (-1, -t), (-t, -t)]
    return [(np.array(pts, dtype=np.float64), 1)]


def _star(rng: np.random.Generator) -> Parts:
    inner = rng.uniform(0.38, 0.55)
    t = np.linspace(0.0, 2.0 * np.pi, 10, endpoint=False) - np.pi / 2
    r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    return [(np.stack([r * np.cos(t), r * np.sin(t)], axis=1), 1)]


def _ring(rng: np.random.Generator) -> Parts:
    return [(_circle(1.0), 1), (_circle(rng.uniform(0.45, 0.65)), 0)]


def _crescent(rng: np.random.Generator) -> Parts:
    bite = _circle(rng.uniform(0.8, 0.95), center=(rng.uniform(0.4, 0.6), -0.1))
    return [(_circle(1.0), 1), (bite, 0)]


def _heart(rng: np.random.Generator) -> Parts:
    t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    # Image y points down, so negate y to keep the lobes on top; centre the bounding box.
    pts = np.stack([x, -(y + 2.5)], axis=1) / 15.0
    return [(pts, 1)]


SHAPE_OUTLINES: tuple[Callable[[np.random.Generator], Parts], ...] = (
    _disc,
    _square,
    _triangle,
    _cross,
    _star,
    _ring,
    _crescent,
    _heart,
)


def place_parts(
    parts: Parts, center: tuple[float, float], size: float, aspect: float, angle: float
) -> Parts:
    """Maps unit-frame parts to image pixels.

    Args:
      parts: ``(polygon float [N, 2] (x, y), fill)`` pairs in the unit frame.
      center: ``(x, y)`` pixel position of the unit frame's origin.
      size: pixel length of the unit frame's side (diameter of the unit disc).
      aspect: width/height stretch applied before rotation (1 = none).
      angle: rotation in radians, counter-clockwise as seen on screen.

    Returns:
      The same parts with polygons in image pixels (float64 [N, 2], x then y).
    """
    stretch = np.array([np.sqrt(aspect), 1.0 / np.sqrt(aspect)]) * (size / 2.0)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # row-vector convention; y down flips the sense
    return [((poly * stretch) @ rot + np.asarray(center), fill) for poly, fill in parts]


def rasterize(parts: Parts, height: int, width: int) -> np.ndarray:
    """Fills pixel-frame parts in order; returns the mask as ``uint8 [H, W]`` of 0/1."""
    mask = np.zeros((height, width), np.uint8)
    for poly, fill in parts:
        pts = np.round(poly * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [pts], int(fill), lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def parts_box(parts: Parts, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Integer pixel box ``(x0, y0, x1, y1)`` (exclusive end) of the parts, clipped to the
    image; ``None`` when nothing lies inside the image."""
    pts = np.concatenate([p for p, fill in parts if fill])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def smooth_noise(
    rng: np.random.Generator, height: int, width: int, cell: int, channels: int = 1
) -> np.ndarray:
    """Value noise in ``[0, 1]``: a coarse random grid (one value per ``cell`` pixels)
    bilinearly upsampled. Returns ``float32 [H, W, channels]``."""
    gh, gw = max(2, height // cell + 1), max(2, width // cell + 1)
    grid = rng.random((gh, gw, channels), dtype=np.float32)
    up = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    return up.reshape(height, width, channels)


def _rotated_coord(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``float32 [H, W]`` pixel coordinate along a random direction (for stripes/gradients)."""
    phi = rng.uniform(0.0, np.pi)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    return xs * np.float32(np.cos(phi)) + ys * np.float32(np.sin(phi))


def pattern(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """A random texture pattern in ``[0, 1]`` as ``float32 [H, W]``: smooth noise, stripes,
    checker, or none (flat). ``scale`` is the object's pixel size, to size the period."""
    kind = rng.integers(4)
    period = max(3.0, scale * rng.uniform(0.12, 0.3))
    if kind == 0:
        return smooth_noise(rng, height, width, max(2, int(period)))[..., 0]
    if kind == 1:
        u = _rotated_coord(rng, height, width)
        return 0.5 + 0.5 * np.sin(u * np.float32(2 * np.pi / period))
    if kind == 2:
        u, v = _rotated_coord(rng, height, width), _rotated_coord(rng, height, width)
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    return np.full((height, width), 0.5, np.float32)


def texture(
    rng: np.random.Generator,
    color: np.ndarray,
    height: int,
    width: int,
    scale: float,
    strength: float,
) -> np.ndarray:
    """Paints an object's texture: ``color`` mixed with a second colour by a random
    pattern, times a linear shading ramp. Returns ``float32 [H, W, 3]`` in ~[0, 255].

    ``strength`` in [0, 1] scales both the second colour's distance and the shading, so
    0 gives flat colour and 1 busy, high-contrast textures.
    """
    second = color + rng.uniform(-110.0, 110.0, size=3) * strength
    t = pattern(rng, height, width, scale)[..., None]
    img = color.astype(np.float32) + t * (second - color).astype(np.float32)
    ramp = _rotated_coord(rng, height, width) / np.float32(max(height, width))
    shade = 1.0 + np.float32(0.35 * strength) * (ramp - ramp.mean())
    return img * shade[..., None]


def background(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """A random linear colour gradient plus coloured blotches: ``float32 [S, S, 3]``.

    ``strength`` in [0, 1] scales the blotch amplitude (0 = plain gradient).
    """
    cell = int(rng.integers(max(2, size // 10), max(3, size // 3)))
    g = max(2, size // cell + 1)
    c0, c1 = rng.uniform(20.0, 235.0, size=(2, 3))
    phi = rng.uniform(0.0, np.pi)
    u = np.linspace(0.0, 1.0, g)
    ramp = u[None, :] * np.cos(phi) + u[:, None] * np.sin(phi)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    blotch = (rng.random((g, g, 3)) - 0.5) * (120.0 * strength)
    grid = (c0 + ramp[..., None] * (c1 - c0) + blotch).astype(np.float32)
    # Built on the coarse grid and upsampled once: one full-size pass instead of several,
    # and bicubic interpolation keeps both the ramp and the blotches smooth.
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean noise with standard deviation ``std``: ``float32`` of ``shape``.

    The sum of two uniform bytes (triangular distribution, close to Gaussian) costs a
    fraction of ``standard_normal`` at image sizes, which matters for throughput.
    """
    n = int(np.prod(shape))
    tri = np.frombuffer(rng.bytes(n), np.uint8).astype(np.int16)
    tri += np.frombuffer(rng.bytes(n), np.uint8)
    tri -= 255  # now in [-255, 255], std 255 / sqrt(6)
    return tri.reshape(shape).astype(np.float32) * np.float32(std * np.sqrt(6.0) / 255.0)


def random_color(rng: np.random.Generator, avoid: np.ndarray, min_contrast: float) -> np.ndarray:
    """An RGB colour (float64 [3]) at least ``min_contrast`` (Euclidean, 0-255 units) from
    ``avoid`` when found within a few tries, so objects stand out from what's behind them."""
    color = rng.uniform(0.0, 255.0, size=3)
    for _ in range(8):
        if np.linalg.norm(color - avoid) >= min_contrast:
            break
        color = rng.uniform(0.0, 255.0, size=3)
    return color


def draw_clutter(rng: np.random.Generator, img: np.ndarray, count: int, size_px: float) -> None:
    """Draws ``count`` distractors into ``img`` (float32 [H, W, 3], in place): open
    polyline strokes and lumpy, irregular "pebbles" - deliberately unlike any object class."""
    h, w = img.shape[:2]
    for _ in range(count):
        color = tuple(float(c) for c in rng.uniform(0.0, 255.0, size=3))
        start = rng.uniform(0.0, [w, h])
        if rng.random() < 0.6:
            steps = rng.normal(0.0, size_px * 0.5, size=(int(rng.integers(2, 6)), 2))
            pts = np.concatenate([start[None], start + np.cumsum(steps, axis=0)])
            thick = int(rng.integers(1, 4))
            cv2.polylines(img, [pts.astype(np.int32)], False, color, thick, cv2.LINE_AA)
        else:
            n = int(rng.integers(8, 16))
            t = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=n))
            r = size_px * 0.3 * rng.uniform(0.55, 1.0, size=n)
            pts = start + np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
            cv2.fillPoly(img, [pts.astype(np.int32)], color, cv2.LINE_AA)
