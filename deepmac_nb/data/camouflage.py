"""Camouflage painting for the shapes set: objects differ from the background by spatial
texture, never by colour.

Every image gets one two-colour palette. The background and every object are painted
with the *same* two colours, each through its own binary-ish pattern (stripes, spots,
dapples or fine mottle, at its own period and orientation), so the colour histogram
inside a box matches the one around it and a colour model (GrabCut's GMMs) has nothing
to separate; what separates an object is the change of texture along its outline - the
way a camouflaged animal in a camera-trap photo defeats colour segmentation. Soft
illumination over the whole image, faint contours on some objects, unannotated
distractors painted with object textures, and thin occluding strokes in the background
texture make the outline the only reliable cue.

Pure functions of their arguments and a ``numpy.random.Generator``; images are
``float32 [H, W, 3]`` RGB in ``[0, 255]``, coordinates pixels (``x`` right, ``y`` down).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from deepmac_nb.data.shape_drawing import smooth_noise

# Pattern kinds; an object never gets the background's kind.
KINDS: tuple[str, ...] = ("stripes", "spots", "dapples", "mottle")


@dataclasses.dataclass(frozen=True)
class Texture:
    """One pattern: ``kind`` (of ``KINDS``), ``period`` in pixels, ``angle`` in radians
    and ``duty``, the share of the pattern in the second colour (a light-spotted and a
    dark-spotted hide use the same two colours in other proportions)."""

    kind: str
    period: float
    angle: float
    duty: float = 0.5


def palette(rng: np.random.Generator, hue_spread: float = 1.0) -> np.ndarray:
    """The image's two colours, ``float32 [2, 3]``: a colour pair 45-90 RGB units apart,
    so the two tones of every pattern are clearly visible but no tone is unique to
    objects. ``hue_spread`` 1: any colours; 0: a light and a dark olive (the tones of
    grass and bark), so images differ in pattern, not in colour."""
    base = rng.uniform(50.0, 205.0, size=3)
    direction = rng.normal(size=3)
    if hue_spread < 1.0:  # (hue_spread 1 keeps the random stream of generator version 3)
        base = _OLIVE + hue_spread * (base - _OLIVE)
        base += rng.uniform(-12.0, 12.0, size=3) * (1.0 - hue_spread)
        direction = _LIGHTER + hue_spread * (direction - _LIGHTER)
    direction /= max(float(np.linalg.norm(direction)), 1e-6)
    half = 0.5 * rng.uniform(45.0, 90.0) * direction
    return np.clip(np.stack([base - half, base + half]), 0.0, 255.0).astype(np.float32)


_OLIVE = np.array([112.0, 118.0, 84.0])
_LIGHTER = np.array([1.0, 1.0, 0.8])


def background_texture(rng: np.random.Generator, period_px: tuple[float, float]) -> Texture:
    """A random texture for the background; ``period_px`` is the ``(min, max)`` period."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    period, angle = float(rng.uniform(*period_px)), float(rng.uniform(0.0, np.pi))
    return Texture(kind, period, angle, float(rng.uniform(0.3, 0.7)))


def object_texture(
    rng: np.random.Generator,
    background: Texture,
    period_px: tuple[float, float],
    duty_shift: tuple[float, float] = (0.2, 0.35),
    finer: bool = False,
) -> Texture:
    """A texture unlike ``background`` in three ways, so the outline is a change of
    texture everywhere: another kind, a period 2-3x finer or coarser (whichever fits in
    ``period_px``), and a ``duty`` moved by ``U(duty_shift)`` up or down (kept inside
    0.15-0.85). The orientation is random."""
    others = [k for k in KINDS if k != background.kind]
    kind = others[int(rng.integers(len(others)))]
    ratio = float(rng.uniform(2.0, 3.0))
    coarser, fine = background.period * ratio, background.period / ratio
    fits = [p for p in (coarser, fine) if period_px[0] <= p <= period_px[1]]
    if finer:  # objects always in the finer pattern: a cue a small CNN picks up at once
        fits = [max(fine, period_px[0])]
    period = fits[int(rng.integers(len(fits)))] if fits else max(fine, period_px[0])
    angle = float(rng.uniform(0.0, np.pi))
    shift = float(rng.uniform(*duty_shift))
    up, down = background.duty + shift, background.duty - shift
    duty = up if (rng.random() < 0.5 and up <= 0.85) or down < 0.15 else down
    return Texture(kind, period, angle, float(np.clip(duty, 0.15, 0.85)))


def _coords(height: int, width: int, angle: float, origin: tuple[float, float]):
    """Pixel coordinates rotated by ``angle``: ``(u, v)`` float32 [H, W] each."""
    ys = np.arange(height, dtype=np.float32)[:, None] + np.float32(origin[1])
    xs = np.arange(width, dtype=np.float32)[None, :] + np.float32(origin[0])
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return xs * c + ys * s, -xs * s + ys * c


def pattern(
    rng: np.random.Generator,
    texture: Texture,
    height: int,
    width: int,
    origin: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """``float32 [H, W]`` in ``[0, 1]``, a share ``texture.duty`` of it near 1: the two-tone
    mixing weight of ``texture`` over a window whose top-left pixel sits at ``origin``.

    A smooth warp bends stripes and jitters spots, so patterns look organic and a
    straight-line detector cannot tell them apart from outlines.
    """
    p = np.float32(texture.period)
    warp = (smooth_noise(rng, height, width, max(4, int(3 * p)), 2) - 0.5) * (0.9 * p)
    u, v = _coords(height, width, texture.angle, origin)
    u, v = u + warp[..., 0], v + warp[..., 1]
    if texture.kind == "stripes":
        f = np.sin(u * np.float32(2 * np.pi) / p)
    elif texture.kind == "spots":
        du = u / p - np.floor(u / p) - np.float32(0.5)
        dv = v / p - np.floor(v / p) - np.float32(0.5)
        f = -np.sqrt(du * du + dv * dv)
    elif texture.kind == "dapples":
        f = smooth_noise(rng, height, width, max(2, int(p)))[..., 0]
    else:  # mottle: finer, less regular noise
        f = smooth_noise(rng, height, width, max(2, int(0.5 * p)))[..., 0]
    # Threshold at the (1 - duty) quantile: a share ``duty`` of the window is in the
    # second colour, with soft (about a pixel wide) edges between the tones.
    threshold = np.quantile(f, 1.0 - texture.duty)
    scale = np.float32(3.0) / max(float(f.std()), 1e-6)
    return np.clip(np.float32(0.5) + scale * (f - np.float32(threshold)), 0.0, 1.0)


def paint(colors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Two-tone paint: ``colors[0]`` where ``weight`` is 0, ``colors[1]`` where it is 1;
    ``float32 [H, W, 3]``."""
    return colors[0] + weight[..., None] * (colors[1] - colors[0])


def illumination(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """Soft light over the whole image: ``float32 [S, S, 1]`` around 1, +- ``strength``/2."""
    light = smooth_noise(rng, size, size, max(8, size // 2))
    return np.float32(1.0) + np.float32(strength) * (light - np.float32(0.5))


def object_shading(rng: np.random.Generator, height: int, width: int, strength: float):
    """A soft linear ramp across one object, ``float32 [H, W, 1]`` around 1."""
    u, _ = _coords(height, width, float(rng.uniform(0.0, 2 * np.pi)), (0.0, 0.0))
    u = u / np.float32(max(height, width, 1))
    return (np.float32(1.0) + np.float32(strength) * (u - u.mean()))[..., None]


def contour(mask: np.ndarray) -> np.ndarray:
    """Outline pixels of a ``uint8 [H, W]`` 0/1 mask (inner morphological gradient), bool."""
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT)
    return (mask > 0) & (eroded == 0)


def blob_polygon(rng: np.random.Generator, center: np.ndarray, radius: float) -> np.ndarray:
    """An irregular, lumpy closed polygon (``int32 [N, 2]`` pixel x, y) around ``center``."""
    n = int(rng.integers(9, 16))
    t = np.sort(rng.uniform(0.0, 2.0 * np.pi, size=n))
    r = radius * rng.uniform(0.55, 1.0, size=n)
    return (center + np.stack([r * np.cos(t), r * np.sin(t)], axis=1)).astype(np.int32)


def occluder_mask(rng: np.random.Generator, size: int, count: int, size_px: float) -> np.ndarray:
    """``count`` thin, bent strokes (grass, twigs) as a ``uint8 [S, S]`` 0/1 mask; they are
    painted in the background texture over everything, hiding what lies under them."""
    mask = np.zeros((size, size), np.uint8)
    for _ in range(count):
        start = rng.uniform(0.0, size, size=2)
        steps = rng.normal(0.0, size_px * 0.45, size=(int(rng.integers(2, 5)), 2))
        pts = np.concatenate([start[None], start + np.cumsum(steps, axis=0)])
        thick = int(rng.integers(1, 3))
        cv2.polylines(mask, [pts.astype(np.int32)], False, 1, thick, cv2.LINE_8)
    return mask
