"""PanWorld: a procedural side-scrolling benchmark world with exact ground truth for memory metrics.

Spec: the shared reference benchmarks.md ("The world", "Labels and metrics") and DESIGN.md section 9.
Modules, each importing only those before it: config (PanWorldConfig, seed splits), world (layout,
painting), path (camera), columns (what the camera shows when: gaps), episode (rejection sampling,
conditioning), render (frames), labels (gaps, sink, subject state, revisit summary).

Design choices: the camera is clamped to the panorama (no wrap-around), so pose is a bijection with the
view and world columns never alias; moves are whole tokens (4 px, actions one-hot over -1, 0, +1) by
default, sub-token moves (-2..+2 px, actions one-hot over 5) with camera_mode='subtoken'; randomness is an
explicit numpy Generator seeded by the episode seed (no global state).
"""

from context_forcing.data.panworld.columns import NEW
from context_forcing.data.panworld.config import SEED_RANGES, PanWorldConfig, check_seed, split_of
from context_forcing.data.panworld.episode import (
    Episode,
    RevisitConstraints,
    revisit_constraints,
    sample_episode,
    stack_conditioning,
)
from context_forcing.data.panworld.labels import (
    GAP_BINS,
    EpisodeLabels,
    Revisit,
    RevisitSchedule,
    episode_labels,
    revisit_schedule,
)
from context_forcing.data.panworld.render import render_episode
from context_forcing.data.panworld.world import SubjectAttributes

__all__ = ["GAP_BINS", "NEW", "SEED_RANGES", "Episode", "EpisodeLabels", "PanWorldConfig", "Revisit",
           "RevisitConstraints", "RevisitSchedule", "SubjectAttributes", "check_seed", "episode_labels",
           "render_episode", "revisit_constraints", "revisit_schedule", "sample_episode", "split_of",
           "stack_conditioning"]
