"""Rendering of one synthetic shapes image: its knobs (``ShapesConfig``) and the scene.

Two looks share the geometry (classes, poses, occlusion, visible masks):

* ``"camouflage"`` (the default): background and objects are painted from the *same*
  two-colour palette with different spatial textures (``deepmac_nb.data.camouflage``),
  under soft light, with faint contours on some objects, unannotated distractors in
  object textures and thin occluding strokes in the background texture. Colour does not
  separate an object from its surroundings; texture and outline do.
* ``"flat"`` (preset ``classic``): each object one colour far from what lies under it,
  on a gradient with coloured blotches - the look of generator version 1, where a colour
  model fed the box nearly solves the task.

Image ``i`` depends only on ``(seed, i, config)`` through its own ``PCG64`` stream.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

from deepmac_nb.data import camouflage as camo
from deepmac_nb.data import shape_drawing as draw
from deepmac_nb.data.shape_drawing import SHAPE_CLASSES

# Bump when rendering changes so cached datasets (ensure_shapes_dataset) regenerate.
# 2: the camouflage look became the default; 3: object textures differ from the
# background's in kind, period (2-3x) and tone proportions.
GENERATOR_VERSION = 3
LOOKS = ("camouflage", "flat")


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """Difficulty knobs of the shapes set. Defaults give the camouflage teaching set.

    Attributes:
      image_size: side of the square images in pixels.
      look: ``"camouflage"`` (texture, not colour, separates objects) or ``"flat"``.
      objects_per_image: inclusive ``(min, max)`` objects drawn per image (before
        occlusion drops some).
      scale_range: object size as a fraction of ``image_size`` (the unit shape's
        diameter), drawn uniformly from ``(min, max)``.
      aspect_jitter: stretch each object by ``exp(u)``, ``u ~ U(-a, a)`` (width vs height
        before rotation); 0 keeps canonical proportions.
      rotation_deg: rotate each object by ``U(-r, r)`` degrees; 0 = upright.
      clutter_count: inclusive ``(min, max)`` unannotated distractors: flat-colour strokes
        and pebbles (flat look) or lumpy blobs in object textures (camouflage).
      occlusion: probability that an object is placed on top of an earlier one (near its
        centre) rather than anywhere; higher = more and heavier occlusion.
      min_visible_fraction: objects whose visible area is below this fraction of their
        in-image area are dropped entirely (not drawn, counted as dropped).
      min_area: objects with fewer visible pixels than this are dropped too.
      blur_sigma: Gaussian blur of the final image (pixels), softens aliased edges.
      noise_std: standard deviation of per-pixel, near-Gaussian sensor noise (0-255 units).
      texture_period: camouflage: ``(min, max)`` pattern period as a fraction of
        ``image_size`` (objects and background alike).
      tone_shift: camouflage: ``(min, max)`` of how far an object's share of the second
        tone moves from the background's (``camouflage.object_texture``'s ``duty_shift``).
      hue_spread: camouflage: 1 = each image's two colours drawn from all colours, 0 = a
        light and a dark olive in every image (``camouflage.palette``).
      objects_finer: camouflage: objects always get the finer pattern (period 2-3x below
        the background's), distractors too; otherwise finer or coarser at random.
      contour_prob: camouflage: probability that an object gets a faint dark outline.
      contour_strength: camouflage: the outline darkens by this fraction.
      occluders: camouflage: inclusive ``(min, max)`` thin strokes in the background
        texture drawn over everything (they cut the visible masks).
      light_strength: camouflage: amplitude of the soft illumination over the image.
      shading_strength: camouflage: amplitude of the linear shading ramp on each object.
      texture_strength: flat: contrast of object textures and shading (0 = flat colours).
      background_strength: flat: amplitude of coloured blotches over the gradient.
      min_contrast: flat: objects get a colour at least this far (RGB Euclidean, 0-255)
        from the mean of what lies under them, when found within a few tries.
    """

    image_size: int = 128
    look: str = "camouflage"
    objects_per_image: tuple[int, int] = (1, 4)
    scale_range: tuple[float, float] = (0.25, 0.5)
    aspect_jitter: float = 0.3
    rotation_deg: float = 180.0
    clutter_count: tuple[int, int] = (1, 3)
    occlusion: float = 0.3
    min_visible_fraction: float = 0.35
    min_area: int = 30
    blur_sigma: float = 0.5
    noise_std: float = 3.0
    texture_period: tuple[float, float] = (0.025, 0.12)
    tone_shift: tuple[float, float] = (0.2, 0.35)
    hue_spread: float = 1.0
    objects_finer: bool = False
    contour_prob: float = 0.7
    contour_strength: float = 0.15
    occluders: tuple[int, int] = (0, 3)
    light_strength: float = 0.2
    shading_strength: float = 0.12
    texture_strength: float = 0.6
    background_strength: float = 0.6
    min_contrast: float = 60.0

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ShapesConfig:
        """Returns the preset ``name`` of ``PRESETS``, with ``overrides`` applied.

        ``classic``: the flat-colour look of generator version 1. ``bold``, ``finer`` and
        ``olive``: camouflage variants measured against the default in docs/results.md
        (stronger tone shift and finer periods; objects always in the finer pattern; one
        olive palette for every image)."""
        presets = {
            "easy": _EASY,
            "default": {},
            "hard": _HARD,
            "classic": _CLASSIC,
            "bold": _BOLD,
            "finer": _FINER,
            "olive": _OLIVE,
        }
        if name not in presets:
            raise ValueError(f"Unknown shapes preset {name!r}; choose from {sorted(presets)}.")
        return cls(**{**presets[name], **overrides})


PRESETS = ("easy", "default", "hard", "classic", "bold", "finer", "olive")
_FINER: dict[str, Any] = dict(objects_finer=True)
_OLIVE: dict[str, Any] = dict(hue_spread=0.0)
_BOLD: dict[str, Any] = dict(tone_shift=(0.35, 0.5), texture_period=(0.025, 0.07))
_EASY: dict[str, Any] = dict(
    objects_per_image=(1, 3), aspect_jitter=0.15, rotation_deg=30.0, clutter_count=(0, 1),
    occlusion=0.1, occluders=(0, 0), contour_prob=1.0, contour_strength=0.25, noise_std=2.0,
)  # fmt: skip
_HARD: dict[str, Any] = dict(
    objects_per_image=(3, 7), scale_range=(0.12, 0.45), aspect_jitter=0.5, clutter_count=(3, 6),
    occlusion=0.6, occluders=(2, 6), contour_prob=0.2, min_visible_fraction=0.25,
    noise_std=6.0,
)  # fmt: skip
_CLASSIC: dict[str, Any] = dict(
    image_size=256, look="flat", objects_per_image=(2, 6), scale_range=(0.14, 0.38),
    aspect_jitter=0.35, clutter_count=(3, 10), occlusion=0.4, min_visible_fraction=0.3,
    blur_sigma=0.6, noise_std=4.0,
)  # fmt: skip


@dataclasses.dataclass
class Rendered:
    image: np.ndarray  # uint8 [H, W, 3] RGB
    instances: list[tuple[int, np.ndarray]]  # (category id, visible mask bool [H, W])
    dropped: int  # objects removed for too little visible area


def rng_of(seed: int, index: int) -> np.random.Generator:
    """The stream of image ``index`` of ``seed``."""
    return np.random.Generator(np.random.PCG64([int(seed), int(index)]))


def sample_objects(rng: np.random.Generator, cfg: ShapesConfig) -> list[tuple[int, list]]:
    """Draws class, pose and outline of each object: ``[(class index 0..7, pixel parts)]``."""
    s = cfg.image_size
    objects: list[tuple[int, list]] = []
    centers: list[np.ndarray] = []
    for _ in range(int(rng.integers(cfg.objects_per_image[0], cfg.objects_per_image[1] + 1))):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        size = rng.uniform(*cfg.scale_range) * s
        aspect = float(np.exp(rng.uniform(-cfg.aspect_jitter, cfg.aspect_jitter)))
        angle = float(np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)))
        if centers and rng.random() < cfg.occlusion:
            center = centers[int(rng.integers(len(centers)))] + rng.normal(0, 0.35 * size, 2)
        else:
            center = rng.uniform(0.1 * s, 0.9 * s, size=2)
        centers.append(center)
        parts = draw.SHAPE_OUTLINES[cls](rng)
        objects.append((cls, draw.place_parts(parts, tuple(center), size, aspect, angle)))
    return objects


def owner_map(masks: list[np.ndarray], cover: np.ndarray | None = None) -> np.ndarray:
    """``int16 [H, W]``: index of the topmost mask covering each pixel, -1 for none (or
    under ``cover``, a 0/1 mask drawn over everything). Later masks are on top, so the
    map is also the set of disjoint visible masks."""
    owner = np.full(masks[0].shape, -1, np.int16) if masks else np.zeros((0, 0), np.int16)
    for k, mask in enumerate(masks):
        owner[mask.view(bool)] = k
    if cover is not None and masks:
        owner[cover.view(bool)] = -1
    return owner


def keep_visible(masks: list[np.ndarray], cfg: ShapesConfig, cover=None) -> list[int]:
    """Indices of objects with enough visible area. Dropping objects only uncovers
    others, so every kept object still passes after the drop."""
    if not masks:
        return []
    visible = np.bincount(owner_map(masks, cover).ravel() + 1, minlength=len(masks) + 1)[1:]
    full = np.array([int(m.sum()) for m in masks])
    need = np.maximum(cfg.min_area, cfg.min_visible_fraction * full)
    return [k for k in range(len(masks)) if full[k] > 0 and visible[k] >= need[k]]


def _paint_flat(rng, img: np.ndarray, objects: list, masks: list, cfg: ShapesConfig) -> None:
    """Composites each object's flat-look texture into ``img`` (float32 [H, W, 3])."""
    s = cfg.image_size
    for (_, parts), mask in zip(objects, masks, strict=True):
        x0, y0, x1, y1 = draw.parts_box(parts, s, s)
        m = mask[y0:y1, x0:x1].view(bool)
        crop = img[y0:y1, x0:x1]
        color = draw.random_color(rng, crop[m].mean(axis=0), cfg.min_contrast)
        size = float(max(x1 - x0, y1 - y0))
        tex = draw.texture(rng, color, y1 - y0, x1 - x0, size, cfg.texture_strength)
        crop[m] = tex[m]


def _scene_flat(rng, cfg: ShapesConfig, objects: list, masks: list) -> np.ndarray:
    s = cfg.image_size
    img = draw.background(rng, s, cfg.background_strength)
    clutter = int(rng.integers(cfg.clutter_count[0], cfg.clutter_count[1] + 1))
    draw.draw_clutter(rng, img, clutter, float(np.mean(cfg.scale_range)) * s)
    _paint_flat(rng, img, objects, masks, cfg)
    return img


def _textured(rng, colors, texture, mask, box) -> tuple[np.ndarray, np.ndarray]:
    """``(painted float32 [h, w, 3], bool [h, w])`` of ``texture`` on ``mask``'s ``box``."""
    x0, y0, x1, y1 = box
    weight = camo.pattern(rng, texture, y1 - y0, x1 - x0, origin=(x0, y0))
    return camo.paint(colors, weight), mask[y0:y1, x0:x1].view(bool)


def _scene_camouflage(rng, cfg: ShapesConfig, objects: list, masks: list, cover) -> np.ndarray:
    """Background, distractors, objects (draw order), occluders, light: float32 [S, S, 3]."""
    s = cfg.image_size
    periods = (cfg.texture_period[0] * s, cfg.texture_period[1] * s)
    colors = camo.palette(rng, cfg.hue_spread)
    # Room below the background's period for an object pattern 2-3x finer.
    bg_periods = (min(3.0 * periods[0], periods[1]), periods[1]) if cfg.objects_finer else periods
    bg_texture = camo.background_texture(rng, bg_periods)
    background = camo.paint(colors, camo.pattern(rng, bg_texture, s, s))
    img = background.copy()
    size_px = float(np.mean(cfg.scale_range)) * s
    for _ in range(int(rng.integers(cfg.clutter_count[0], cfg.clutter_count[1] + 1))):
        blob = np.zeros((s, s), np.uint8)
        poly = camo.blob_polygon(rng, rng.uniform(0.0, s, size=2), 0.35 * size_px)
        cv2.fillPoly(blob, [poly], 1, cv2.LINE_8)
        box = cv2.boundingRect(blob)
        if box[2] and box[3]:
            x, y, w, h = box
            tex = camo.object_texture(rng, bg_texture, periods, cfg.tone_shift, cfg.objects_finer)
            painted, m = _textured(rng, colors, tex, blob, (x, y, x + w, y + h))
            img[y : y + h, x : x + w][m] = painted[m]
    for (_, parts), mask in zip(objects, masks, strict=True):
        box = draw.parts_box(parts, s, s)
        tex = camo.object_texture(rng, bg_texture, periods, cfg.tone_shift, cfg.objects_finer)
        painted, m = _textured(rng, colors, tex, mask, box)
        x0, y0, x1, y1 = box
        painted *= camo.object_shading(rng, y1 - y0, x1 - x0, cfg.shading_strength)
        if rng.random() < cfg.contour_prob:
            painted[camo.contour(mask[y0:y1, x0:x1])] *= np.float32(1.0 - cfg.contour_strength)
        img[y0:y1, x0:x1][m] = painted[m]
    on_top = cover.view(bool)
    img[on_top] = background[on_top]
    return img * camo.illumination(rng, s, cfg.light_strength)


def render(index: int, seed: int, cfg: ShapesConfig) -> Rendered:
    """Draws image ``index`` of stream ``seed``: sample, drop hidden objects, paint."""
    if cfg.look not in LOOKS:
        raise ValueError(f"Unknown shapes look {cfg.look!r}; choose from {', '.join(LOOKS)}.")
    rng = rng_of(seed, index)
    s = cfg.image_size
    sampled = sample_objects(rng, cfg)
    all_masks = [draw.rasterize(parts, s, s) for _, parts in sampled]
    cover = None
    if cfg.look == "camouflage":
        count = int(rng.integers(cfg.occluders[0], cfg.occluders[1] + 1))
        cover = camo.occluder_mask(rng, s, count, float(np.mean(cfg.scale_range)) * s)
    keep = keep_visible(all_masks, cfg, cover)
    objects, masks = [sampled[k] for k in keep], [all_masks[k] for k in keep]
    if cover is None:
        img = _scene_flat(rng, cfg, objects, masks)
    else:
        img = _scene_camouflage(rng, cfg, objects, masks, cover)
    if cfg.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), cfg.blur_sigma)
    img += draw.sensor_noise(rng, img.shape, cfg.noise_std)
    owner = owner_map(masks, cover)
    instances = [(cls + 1, owner == k) for k, (cls, _) in enumerate(objects)]
    image = np.rint(np.clip(img, 0, 255, out=img), out=img).astype(np.uint8)
    return Rendered(image, instances, dropped=len(sampled) - len(keep))


def render_image(
    index: int, seed: int = 0, config: ShapesConfig | None = None
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Renders image ``index`` of the stream ``seed`` (no files written).

    Returns:
      ``image`` uint8 ``[H, W, 3]`` RGB and ``instances``: ``(category_id, mask)`` pairs in
      draw order (later = on top), ``mask`` bool ``[H, W]`` = the object's *visible*
      pixels; masks of one image never overlap.
    """
    rendered = render(index, seed, config or ShapesConfig())
    return rendered.image, rendered.instances
