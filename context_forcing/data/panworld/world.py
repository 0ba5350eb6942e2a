"""The PanWorld layout (prompt attributes, landmarks, pillars, subject) and its painting into a panorama.

A layout is sampled once per episode; `paint_scene` turns it into one (H, world_width, 3) uint8 image (sky,
hills, ground, landmarks, shrine, pillars) so a frame is a slice of it plus the subject sprite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from context_forcing.data.panworld.config import PanWorldConfig, split_of

# Palettes (day, dusk, night, desert): sky top, sky bottom, hills, ground, ground texture, pillar.
PALETTE_COLOURS = np.array([
    [(90, 150, 230), (170, 210, 250), (110, 165, 125), (70, 140, 60), (58, 118, 50), (70, 50, 35)],
    [(60, 40, 110), (240, 140, 90), (125, 75, 115), (95, 80, 60), (80, 66, 50), (40, 28, 45)],
    [(10, 15, 40), (45, 55, 95), (35, 45, 70), (30, 55, 42), (24, 44, 34), (110, 110, 125)],
    [(150, 200, 235), (235, 225, 200), (200, 160, 110), (210, 180, 120), (190, 158, 100), (105, 65, 40)],
], dtype=np.int16)
LANDMARK_RGB = np.array([(220, 40, 40), (245, 140, 30), (250, 225, 50), (150, 230, 40), (30, 150, 60),
                         (20, 160, 150), (60, 220, 240), (40, 70, 220), (130, 50, 190), (230, 60, 200),
                         (245, 245, 245), (120, 70, 30)], dtype=np.uint8)
SUBJECT_RGB = np.array([(230, 60, 60), (245, 150, 40), (235, 220, 60), (80, 205, 80), (60, 205, 205),
                        (70, 95, 235), (165, 85, 215), (235, 115, 185)], dtype=np.uint8)
ACCENT_RGB = np.array([(10, 10, 10), (250, 250, 250), (100, 50, 20), (20, 30, 110), (10, 90, 40),
                       (128, 128, 128)], dtype=np.uint8)  # all far from every subject colour
HAT_RGB = np.array((170, 20, 40), dtype=np.uint8)
SHRINE_RGB = np.array((235, 75, 30), dtype=np.uint8)
SHRINE_TOP_RGB = np.array((30, 20, 20), dtype=np.uint8)
BADGES = np.array([
    [[0, 0, 0], [0, 1, 0], [0, 0, 0]],  # dot
    [[0, 1, 0], [1, 1, 1], [0, 1, 0]],  # plus
    [[1, 0, 1], [0, 1, 0], [1, 0, 1]],  # cross
    [[0, 0, 0], [1, 1, 1], [0, 0, 0]],  # bar
    [[1, 0, 1], [0, 0, 0], [1, 0, 1]],  # corners
    [[1, 1, 1], [1, 1, 1], [1, 1, 1]],  # full
], dtype=bool)


@dataclass(frozen=True)
class Landmark:
    shape: int  # index into the shape painters (box, disk, triangle, diamond, ring)
    colour: int  # index into LANDMARK_RGB
    size: int  # px, square bounding box
    x: int  # left world column
    y: int  # top row


@dataclass(frozen=True)
class Pillar:
    x: int  # left world column
    width: int


@dataclass(frozen=True)
class SubjectAttributes:
    """Class (shape, colour) is in the prompt; badge and accent are hidden, sampled per episode."""

    shape: int
    colour: int
    badge: int
    accent: int


@dataclass(frozen=True)
class Layout:
    palette: int
    density: int
    subject: SubjectAttributes
    landmarks: tuple[Landmark, ...]
    pillars: tuple[Pillar, ...]
    texture_seed: int  # hills and ground texture


@dataclass(frozen=True, eq=False)
class Scene:
    """A painted world: `image` (H, world_width, 3) uint8 with pillars in front; `pillar_columns`
    (world_width,) bool."""

    image: np.ndarray
    pillar_columns: np.ndarray


def shape_mask(kind: int, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of shape `kind`: 0 box, 1 disk, 2 triangle, 3 diamond, 4 ring."""
    y = (np.arange(height)[:, None] + 0.5) / height * 2 - 1  # pixel centres in [-1, 1]
    x = (np.arange(width)[None, :] + 0.5) / width * 2 - 1
    if kind == 0:
        return np.ones((height, width), dtype=bool)
    if kind == 1:
        return x**2 + y**2 <= 1.0
    if kind == 2:
        return np.abs(x) <= (y + 1) / 2 + 1.0 / width
    if kind == 3:
        return np.abs(x) + np.abs(y) <= 1.0 + 1.0 / max(height, width)
    if kind == 4:
        r2 = x**2 + y**2
        return (r2 <= 1.0) & (r2 >= 0.3)
    raise ValueError(f"shape kind must be in [0, 4], got {kind}")


def _stratified(rng: np.random.Generator, n: int, lo: int, hi: int, widths: np.ndarray) -> np.ndarray:
    """Left edges of n items of `widths` spread over [lo, hi): one item per equal slot, jittered in it."""
    slot = (hi - lo) / max(n, 1)
    u = rng.random(n)
    x = lo + np.arange(n) * slot + u * np.maximum(slot - widths, 0)
    return np.clip(np.floor(x).astype(np.int64), lo, np.maximum(hi - widths, lo))


def subject_screen_box(cfg: PanWorldConfig) -> tuple[int, int]:
    """(top row, left column) of the subject sprite on screen, hat rows included."""
    left = (cfg.frame_width - cfg.subject_width) // 2
    return cfg.ground_y - cfg.subject_height - cfg.hat_height, left


def sample_layout(cfg: PanWorldConfig, rng: np.random.Generator, seed: int) -> Layout:
    """Prompt attributes, hidden subject attributes, landmarks, pillars; held-out classes skip train seeds."""
    palette = int(rng.integers(cfg.palettes))
    heldout = set(cfg.heldout_subjects) if split_of(seed) == "train" else set()
    while True:  # terminates: config validation leaves at least one class
        shape, colour = int(rng.integers(cfg.subject_shapes)), int(rng.integers(cfg.subject_colours))
        if (shape, colour) not in heldout:
            break
    density = int(rng.integers(cfg.densities))
    subject = SubjectAttributes(shape, colour, int(rng.integers(cfg.badges)), int(rng.integers(cfg.accents)))
    span = cfg.landmarks_max - cfg.landmarks_min + 1
    count = cfg.landmarks_min + int((density + rng.random()) * span / cfg.densities)  # density d: its share
    sizes = rng.integers(cfg.landmark_size_min, cfg.landmark_size_max + 1, count)
    xs = _stratified(rng, count, 0, cfg.world_width, sizes)
    landmarks = []
    for size, x in zip(sizes.tolist(), xs.tolist()):
        floating = rng.random() < cfg.floating_prob
        top_max = max(cfg.ground_y - size - 4, 1)
        y = int(rng.integers(1, top_max + 1)) if floating else cfg.ground_y - size
        shape, colour = int(rng.integers(cfg.landmark_shapes)), int(rng.integers(cfg.landmark_colours))
        landmarks.append(Landmark(shape, colour, size, x, y))
    n_pillars = int(rng.integers(cfg.pillars_min, cfg.pillars_max + 1))
    widths = rng.integers(cfg.pillar_width_min, cfg.pillar_width_max + 1, n_pillars)
    # Pillars only where the subject can pass behind them: world columns the subject covers at some camera x.
    _, left = subject_screen_box(cfg)
    px = _stratified(rng, n_pillars, left, cfg.max_camera_x + left + cfg.subject_width, widths)
    pillars = tuple(Pillar(int(x), int(w)) for x, w in zip(px, widths))
    return Layout(palette, density, subject, tuple(landmarks), pillars, int(rng.integers(2**62)))


def pillar_columns(cfg: PanWorldConfig, pillars: tuple[Pillar, ...]) -> np.ndarray:
    """(world_width,) bool: columns covered by a pillar."""
    mask = np.zeros(cfg.world_width, dtype=bool)
    for p in pillars:
        mask[p.x:p.x + p.width] = True
    return mask


def paint_scene(cfg: PanWorldConfig, layout: Layout, shrine_x: int) -> Scene:
    """Paint the panorama: sky gradient, hills, textured ground, landmarks, the shrine at `shrine_x`,
    pillars."""
    h, w, gy = cfg.frame_height, cfg.world_width, cfg.ground_y
    sky_top, sky_bottom, hills, ground, ground_alt, pillar = PALETTE_COLOURS[layout.palette]
    rng = np.random.default_rng(layout.texture_seed)
    t = (np.arange(h) / max(gy - 1, 1))[:, None]
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = np.round(sky_top + (sky_bottom - sky_top) * np.clip(t, 0, 1))[:, None, :].astype(np.uint8)
    # Hills: a smooth random skyline, so every world column has its own profile.
    cols = np.arange(w)
    periods, phases = rng.uniform(24, 120, 3), rng.uniform(0, 2 * np.pi, 3)
    height = sum(np.sin(2 * np.pi * cols / p + f) for p, f in zip(periods, phases))  # in [-3, 3]
    top = np.clip(np.round(gy - (gy * 0.3 + height * gy * 0.08)), 1, gy).astype(np.int64)
    rows = np.arange(h)[:, None]
    image[(rows >= top[None, :]) & (rows < gy)] = hills
    texture = rng.random((h - gy, w)) < 0.3
    image[gy:] = np.where(texture[..., None], ground_alt, ground).astype(np.uint8)
    for lm in layout.landmarks:
        _stamp(image, shape_mask(lm.shape, lm.size, lm.size), LANDMARK_RGB[lm.colour], lm.y, lm.x)
    _paint_shrine(cfg, image, shrine_x)
    covered = pillar_columns(cfg, layout.pillars)
    for p in layout.pillars:
        image[:, p.x:p.x + p.width] = pillar
        image[:, p.x] = np.clip(pillar + 35, 0, 255)  # lit edge and shaded edge
        image[:, p.x + p.width - 1] = np.clip(pillar - 25, 0, 255)
    return Scene(image=image, pillar_columns=covered)


def _stamp(image: np.ndarray, mask: np.ndarray, rgb: np.ndarray, top: int, left: int) -> None:
    """Paint `rgb` where `mask` is set, with the mask's corner at (top, left), clipped to the image."""
    h, w = mask.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, image.shape[0]), min(left + w, image.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    region = image[y0:y1, x0:x1]
    region[mask[y0 - top:y1 - top, x0 - left:x1 - left]] = rgb


def _paint_shrine(cfg: PanWorldConfig, image: np.ndarray, centre: int) -> None:
    """A gate: two posts and a dark top beam, standing on the ground, centred on world column `centre`."""
    sw, sh = cfg.shrine_width, cfg.shrine_height
    gate = np.zeros((sh, sw), dtype=bool)
    gate[:, :2] = gate[:, -2:] = True
    gate[3] = True  # lower beam
    top = np.zeros_like(gate)
    top[:2] = True
    left = centre - sw // 2
    _stamp(image, gate, SHRINE_RGB, cfg.ground_y - sh, left)
    _stamp(image, top, SHRINE_TOP_RGB, cfg.ground_y - sh, left)


def subject_sprites(cfg: PanWorldConfig, subject: SubjectAttributes) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (2, Hs, Ws, 3) uint8, alpha (2, Hs, Ws) bool) before / after the state change (the hat).

    Hs = hat_height + subject_height; the badge (3x3 pattern in the accent colour) sits in the body's middle.
    """
    sh, sw, hh = cfg.subject_height, cfg.subject_width, cfg.hat_height
    body = shape_mask(subject.shape, sh, sw)
    rgb = np.zeros((hh + sh, sw, 3), dtype=np.uint8)
    alpha = np.zeros((hh + sh, sw), dtype=bool)
    rgb[hh:][body], alpha[hh:] = SUBJECT_RGB[subject.colour], body
    badge = np.zeros((sh, sw), dtype=bool)
    top, left = (sh - 3) // 2 + 1, sw // 2 - 1
    badge[top:top + 3, left:left + 3] = BADGES[subject.badge]
    rgb[hh:][badge & body] = ACCENT_RGB[subject.accent]
    hat = np.zeros((hh, sw), dtype=bool)
    hat[-1, 1:sw - 1] = True  # brim
    hat[:-1, 2:sw - 2] = True  # crown
    rgb_hat, alpha_hat = rgb.copy(), alpha.copy()
    rgb_hat[:hh][hat], alpha_hat[:hh] = HAT_RGB, hat
    return np.stack([rgb, rgb_hat]), np.stack([alpha, alpha_hat])
