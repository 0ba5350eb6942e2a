"""`PanWorldConfig`: every number of the PanWorld benchmark world, frozen and validated; the seed splits."""

from __future__ import annotations

from dataclasses import dataclass

from context_forcing.config import ConfigError

# Seeds of the two splits are disjoint ranges, so no eval episode is ever a training episode.
SEED_RANGES: dict[str, tuple[int, int]] = {"train": (0, 1_000_000), "eval": (1_000_000, 2**62)}

CAMERA_MODES = ("token", "subtoken")
LANDMARK_SHAPE_KINDS = 5  # painters in world.py: box, disk, triangle, diamond, ring
LANDMARK_COLOURS = 12
SUBJECT_SHAPE_KINDS = 4  # box, disk, triangle, diamond
SUBJECT_COLOURS = 8
BADGE_KINDS = 6  # dot, plus, cross, bar, checker, corners
ACCENT_COLOURS = 6
PALETTES = 4  # day, dusk, night, desert


def check_seed(seed: int, split: str) -> int:
    """Return `seed` if it lies in `split`'s range; ValueError naming the range otherwise."""
    if split not in SEED_RANGES:
        raise ValueError(f"split must be one of {sorted(SEED_RANGES)}, got {split!r}")
    lo, hi = SEED_RANGES[split]
    if not isinstance(seed, int) or not lo <= seed < hi:
        raise ValueError(f"{split} seeds must be ints in [{lo}, {hi}), got {seed!r}")
    return seed


def split_of(seed: int) -> str:
    """The split whose range holds `seed`."""
    for split, (lo, hi) in SEED_RANGES.items():
        if lo <= seed < hi:
            return split
    raise ValueError(f"seed {seed!r} lies in no split: {SEED_RANGES}")


def _range(name: str, value: int | float, lo: int | float, hi: int | float) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"panworld.{name} must be in [{lo}, {hi}], got {value!r}")


def _ordered(low: str, high: str, cfg: PanWorldConfig) -> None:
    if getattr(cfg, low) > getattr(cfg, high):
        raise ConfigError(f"panworld.{low} ({getattr(cfg, low)}) must be <= "
                          f"panworld.{high} ({getattr(cfg, high)})")


@dataclass(frozen=True)
class PanWorldConfig:
    """The PanWorld world (benchmarks.md "The world"). Pixels are px; times are latent frames.

    The camera is clamped to the panorama (no wrap-around): camera x lies in [0, world_width - frame_width],
    so pose is a bijection with what is on screen and world columns never alias.
    """

    # geometry
    frame_height: int = 32
    frame_width: int = 32
    token_width: int = 4  # px per vertical-strip token; whole-token camera moves are this wide
    screens: int = 6  # panorama width in frames
    ground_height: int = 8  # px of ground band at the bottom of the frame
    # landmarks (identity never in the prompt)
    landmarks_min: int = 10
    landmarks_max: int = 14
    landmark_shapes: int = 5
    landmark_colours: int = 12
    landmark_size_min: int = 5
    landmark_size_max: int = 11
    floating_prob: float = 0.35  # share of landmarks drawn in the sky instead of on the ground
    # foreground pillars (drawn in front of the subject)
    pillars_min: int = 2
    pillars_max: int = 3
    pillar_width_min: int = 8
    pillar_width_max: int = 12
    # subject: fixed on screen, centred, standing on the ground
    subject_width: int = 8
    subject_height: int = 10
    hat_height: int = 3  # the state change: a hat on top of the subject
    subject_shapes: int = 4
    subject_colours: int = 8
    badges: int = 6  # hidden attribute: badge pattern
    accents: int = 6  # hidden attribute: badge (accent) colour
    shrine_width: int = 12  # passing the shrine gives the subject its hat
    shrine_height: int = 13
    shrine_radius: int = 2  # px: the subject passes the shrine when its centre column is this close
    state_change_min_fraction: float = 0.1  # the state change frame lies in [min, max] * frames
    state_change_max_fraction: float = 0.9
    # prompt attributes
    palettes: int = 4
    densities: int = 3  # landmark density levels splitting [landmarks_min, landmarks_max]
    heldout_subjects: tuple[tuple[int, int], ...] = ()  # (shape, colour) classes kept out of train seeds
    # camera
    camera_mode: str = "token"  # 'token': moves in {-1, 0, +1} tokens; 'subtoken': moves in {-2..+2} px
    min_speed: float = 1 / 3  # per segment, the camera moves on a frame with probability U(min_speed, 1)
    max_pause: int = 12  # frames of pause after reaching a target: U{0..max_pause}
    revisit_bias: float = 0.0  # probability that a target is an earlier target (long-range returns)
    back_and_forth: float = 0.0  # probability that a segment is a short excursion and the next one returns
    excursion_max: int = 12  # tokens: an excursion's target lies U{1..excursion_max} tokens away
    # revisit constraints for rejection sampling, at reference_frames; scaled down linearly below it
    sink_frames: int = 3
    horizon: int = 3  # a seen column is memory-critical when its gap > horizon
    mid_gap: int = 24
    min_returns: int = 2  # separate returns (runs of frames) with a gap > mid_gap
    long_gap: int = 96
    # episodes of at least far_frames frames (128 s) must also hold a revisit with gap in [far_gap, 2 far_gap)
    # (the eval's 192-384 bin) of a column last seen before the P1 prefix ends; shorter ones are unaffected
    far_gap: int = 192
    far_frames: int = 512
    p1_fraction: float = 0.25  # a long-gap revisit must recall a column last seen before this share of frames
    reference_frames: int = 256
    min_constrained_frames: int = 32  # shorter episodes are accepted unconstrained
    occlusion_min_frames: int = 64  # episodes this long must occlude the subject at least once
    max_attempts: int = 2000
    # distractors
    flicker_prob: float = 0.0  # per frame: a random-colour square at a random place (default off)
    flicker_size: int = 4

    def __post_init__(self) -> None:
        _range("frame_height", self.frame_height, 16, 256)
        _range("frame_width", self.frame_width, 8, 256)
        _range("token_width", self.token_width, 1, self.frame_width)
        if self.frame_width % self.token_width:
            raise ConfigError(f"panworld.frame_width ({self.frame_width}) must be divisible by "
                              f"panworld.token_width ({self.token_width})")
        _range("screens", self.screens, 2, 64)
        _range("ground_height", self.ground_height, 1, self.frame_height // 2)
        sky = self.frame_height - self.ground_height
        _range("landmarks_min", self.landmarks_min, 0, 256)
        _range("landmarks_max", self.landmarks_max, 0, 256)
        _ordered("landmarks_min", "landmarks_max", self)
        _range("landmark_shapes", self.landmark_shapes, 1, LANDMARK_SHAPE_KINDS)
        _range("landmark_colours", self.landmark_colours, 1, LANDMARK_COLOURS)
        _range("landmark_size_min", self.landmark_size_min, 2, sky)
        _range("landmark_size_max", self.landmark_size_max, 2, sky)
        _ordered("landmark_size_min", "landmark_size_max", self)
        _range("floating_prob", self.floating_prob, 0.0, 1.0)
        _range("pillars_min", self.pillars_min, 0, self.screens * 2)
        _range("pillars_max", self.pillars_max, 0, self.screens * 2)
        _ordered("pillars_min", "pillars_max", self)
        _range("pillar_width_min", self.pillar_width_min, 1, self.frame_width // 2)
        _range("pillar_width_max", self.pillar_width_max, 1, self.frame_width // 2)
        _ordered("pillar_width_min", "pillar_width_max", self)
        _range("subject_width", self.subject_width, 5, self.frame_width // 2)
        _range("subject_height", self.subject_height, 5, sky - 1)
        _range("hat_height", self.hat_height, 1, sky - self.subject_height)
        _range("subject_shapes", self.subject_shapes, 1, SUBJECT_SHAPE_KINDS)
        _range("subject_colours", self.subject_colours, 1, SUBJECT_COLOURS)
        _range("badges", self.badges, 1, BADGE_KINDS)
        _range("accents", self.accents, 1, ACCENT_COLOURS)
        _range("shrine_width", self.shrine_width, 4, self.frame_width)
        _range("shrine_height", self.shrine_height, 4, sky)
        _range("shrine_radius", self.shrine_radius, 0, self.frame_width // 2)
        _range("state_change_min_fraction", self.state_change_min_fraction, 0.0, 1.0)
        _range("state_change_max_fraction", self.state_change_max_fraction, 0.0, 1.0)
        _ordered("state_change_min_fraction", "state_change_max_fraction", self)
        _range("palettes", self.palettes, 1, PALETTES)
        _range("densities", self.densities, 1, max(1, self.landmarks_max - self.landmarks_min + 1))
        for pair in self.heldout_subjects:
            if (len(pair) != 2 or not 0 <= pair[0] < self.subject_shapes
                    or not 0 <= pair[1] < self.subject_colours):
                raise ConfigError(f"panworld.heldout_subjects entries must be (shape < "
                                  f"{self.subject_shapes}, colour < {self.subject_colours}), got {pair!r}")
        if len(set(self.heldout_subjects)) >= self.subject_shapes * self.subject_colours:
            raise ConfigError("panworld.heldout_subjects must leave at least one subject class for training")
        if self.camera_mode not in CAMERA_MODES:
            raise ConfigError(f"panworld.camera_mode must be one of {CAMERA_MODES}, got {self.camera_mode!r}")
        _range("min_speed", self.min_speed, 0.05, 1.0)
        _range("max_pause", self.max_pause, 0, 1000)
        _range("revisit_bias", self.revisit_bias, 0.0, 1.0)
        _range("back_and_forth", self.back_and_forth, 0.0, 1.0)
        _range("excursion_max", self.excursion_max, 1, 10_000)
        _range("sink_frames", self.sink_frames, 1, 64)
        _range("horizon", self.horizon, 1, 1000)
        _range("mid_gap", self.mid_gap, 1, 100_000)
        _range("min_returns", self.min_returns, 0, 100)
        _range("long_gap", self.long_gap, 1, 100_000)
        _ordered("mid_gap", "long_gap", self)
        _range("far_gap", self.far_gap, 1, 100_000)
        _ordered("long_gap", "far_gap", self)
        _range("far_frames", self.far_frames, 1, 1_000_000)
        _range("p1_fraction", self.p1_fraction, 0.0, 1.0)
        _range("reference_frames", self.reference_frames, 1, 100_000)
        _range("min_constrained_frames", self.min_constrained_frames, 1, 100_000)
        _range("occlusion_min_frames", self.occlusion_min_frames, 1, 100_000)
        _range("max_attempts", self.max_attempts, 1, 1_000_000)
        _range("flicker_prob", self.flicker_prob, 0.0, 1.0)
        _range("flicker_size", self.flicker_size, 1, min(self.frame_height, self.frame_width))

    @property
    def world_width(self) -> int:
        """Panorama width in px."""
        return self.screens * self.frame_width

    @property
    def max_camera_x(self) -> int:
        """The clamped camera's largest x (px); the camera shows world columns [x, x + frame_width)."""
        return self.world_width - self.frame_width

    @property
    def tokens_per_frame(self) -> int:
        return self.frame_width // self.token_width

    @property
    def ground_y(self) -> int:
        """First row of the ground band."""
        return self.frame_height - self.ground_height

    @property
    def move_px(self) -> int:
        """Pixels per action unit: one token in token mode, one pixel in subtoken mode."""
        return self.token_width if self.camera_mode == "token" else 1

    @property
    def moves(self) -> tuple[int, ...]:
        """The action vocabulary in action units; actions are one-hot over it (A = len(moves))."""
        return (-1, 0, 1) if self.camera_mode == "token" else (-2, -1, 0, 1, 2)

    @property
    def action_dim(self) -> int:
        return len(self.moves)

    @property
    def prompt_sizes(self) -> tuple[int, int, int, int]:
        """Values per prompt attribute: palette, subject shape, subject colour, landmark density."""
        return (self.palettes, self.subject_shapes, self.subject_colours, self.densities)

    @property
    def prompt_vocab_size(self) -> int:
        """Smallest text vocabulary holding every prompt id (ids 1.., 0 is the null token)."""
        return 1 + sum(self.prompt_sizes)
