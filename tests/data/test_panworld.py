"""PanWorld: determinism, seed splits, revisit constraints, labels, static world, subject identity."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from context_forcing.config import ConfigError
from context_forcing.data.panworld import (
    NEW,
    SEED_RANGES,
    PanWorldConfig,
    check_seed,
    episode_labels,
    render_episode,
    revisit_constraints,
    revisit_schedule,
    sample_episode,
    split_of,
    stack_conditioning,
)
from context_forcing.data.panworld.episode import occluded_between_visible
from context_forcing.data.panworld.world import (
    HAT_RGB,
    SubjectAttributes,
    subject_screen_box,
    subject_sprites,
)

CFG = PanWorldConfig()


def brute_force_gaps(camera_x: np.ndarray, frame_width: int) -> np.ndarray:
    """gap[t, j] by scanning back frame by frame for the last frame column camera_x[t] + j was on screen."""
    gaps = np.full((len(camera_x), frame_width), NEW)
    for t, x in enumerate(camera_x):
        for j in range(frame_width):
            for s in range(t - 1, -1, -1):
                if camera_x[s] <= x + j < camera_x[s] + frame_width:
                    gaps[t, j] = t - s
                    break
    return gaps


# ---- config and seeds -------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("screens", 1), ("landmarks_min", 20), ("camera_mode", "wrap"),
                                          ("pillar_width_max", 99), ("flicker_prob", 1.5), ("long_gap", 3)])
def test_config_rejects_out_of_range_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"panworld.{field}"):
        replace(CFG, **{field: value})


def test_seed_ranges_are_disjoint_and_validated():
    (train_lo, train_hi), (eval_lo, eval_hi) = SEED_RANGES["train"], SEED_RANGES["eval"]
    assert train_hi <= eval_lo or eval_hi <= train_lo
    assert check_seed(train_hi - 1, "train") == train_hi - 1 and check_seed(eval_lo, "eval") == eval_lo
    for seed, split in [(eval_lo, "train"), (train_hi - 1, "eval"), (-1, "train"), (0, "test")]:
        with pytest.raises(ValueError):
            check_seed(seed, split)
    assert split_of(0) == "train" and split_of(eval_lo) == "eval"
    with pytest.raises(ValueError, match="train seeds"):
        sample_episode(CFG, eval_lo, 8, split="train")


def test_heldout_subject_classes_appear_only_in_eval():
    cfg = replace(CFG, heldout_subjects=((0, 0), (1, 2)))
    def classes(seeds):
        episodes = (sample_episode(cfg, s, 1) for s in seeds)
        return {(e.layout.subject.shape, e.layout.subject.colour) for e in episodes}

    train, evals = classes(range(150)), classes(range(SEED_RANGES["eval"][0], SEED_RANGES["eval"][0] + 150))
    assert not train & set(cfg.heldout_subjects)
    assert evals & set(cfg.heldout_subjects)


# ---- sampling ---------------------------------------------------------------------------------------------

def test_same_seed_same_episode_different_seed_different():
    a, b, c = (sample_episode(CFG, s, 64) for s in (7, 7, 8))
    np.testing.assert_array_equal(render_episode(a), render_episode(b))
    la, lb = episode_labels(a), episode_labels(b)
    for name in ("camera_x", "gap", "sink_covered", "first_seen", "world_mask", "subject_visibility"):
        np.testing.assert_array_equal(getattr(la, name), getattr(lb, name))
    assert la.subject == lb.subject and la.state_change_frame == lb.state_change_frame
    assert not np.array_equal(render_episode(a), render_episode(c))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, SEED_RANGES["train"][1] - 1), frames=st.integers(64, 256),
       mode=st.sampled_from(["token", "subtoken"]))
def test_every_episode_meets_the_revisit_constraints(seed, frames, mode):
    cfg = replace(CFG, camera_mode=mode)
    frames = frames if mode == "token" else 128 + (frames - 64) * 2 // 3  # subtoken: constrained from 128
    episode = sample_episode(cfg, seed, frames)
    cons, labels = revisit_constraints(cfg, frames), episode_labels(episode)
    assert cons.active and cons.mid_gap <= 24 and cons.long_gap <= 96
    gap, t = labels.gap, np.arange(frames)[:, None]
    returning = (gap > cons.mid_gap).any(axis=1)
    assert returning[0] + (returning[1:] & ~returning[:-1]).sum() >= 2  # two separate returns
    assert ((gap > cons.long_gap) & (t - gap < frames // 4)).any()  # P1 recalls a long gap
    assert ((gap > cons.mid_gap) & ~labels.sink_covered).any()  # a revisited region first seen after the sink
    assert cons.change_lo <= labels.state_change_frame <= cons.change_hi
    assert occluded_between_visible(labels.subject_visibility)
    moves = np.diff(episode.camera_x) // cfg.move_px
    assert set(moves.tolist()) <= set(cfg.moves) and np.all(np.diff(episode.camera_x) % cfg.move_px == 0)
    assert episode.camera_x.min() >= 0 and episode.camera_x.max() <= cfg.max_camera_x


def test_reference_length_uses_the_full_constraints():
    cons = revisit_constraints(CFG, 256)
    assert (cons.mid_gap, cons.long_gap, cons.recall_before, cons.far) == (24, 96, 64, None)
    assert revisit_constraints(CFG, 511).far is None and revisit_constraints(CFG, 512).far == (192, 384)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 * SEED_RANGES["eval"][0]), mode=st.sampled_from(["token", "subtoken"]))
def test_128_s_episodes_revisit_a_column_after_192_to_383_frames(seed, mode):
    frames = 512 + seed % 3  # 128 s, padded to whole chunks of up to 3
    labels = episode_labels(sample_episode(replace(CFG, camera_mode=mode), seed, frames))
    gap, t = labels.gap, np.arange(frames)[:, None]
    assert ((gap >= 192) & (gap < 384) & (t - gap < frames // 4)).any()  # last seen in P1's prefill


def test_the_far_revisit_leaves_shorter_episodes_as_they_were():
    without = replace(CFG, far_frames=1_000_000)  # the sampler before the 192-384 frame revisit existed
    for seed, frames in [(1_000_000, 258), (1_000_004, 258), (1_000_004, 511), (1_000_004, 513)]:
        same = np.array_equal(sample_episode(CFG, seed, frames).camera_x,
                              sample_episode(without, seed, frames).camera_x)
        assert same == (frames < 512)  # seed 1000004's first 128 s path had no such revisit: resampled


def test_sampling_terminates_for_every_length_up_to_300():
    for frames in range(1, 301):
        episode = sample_episode(CFG, frames, frames)
        assert episode.frames == frames and episode.attempts <= CFG.max_attempts


# ---- labels -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["token", "subtoken"])
def test_gaps_sink_and_first_visit_match_brute_force(mode):
    cfg = replace(CFG, camera_mode=mode, screens=3, max_pause=3)
    episode = sample_episode(cfg, 3, 40)
    labels, x = episode_labels(episode), episode.camera_x
    np.testing.assert_array_equal(labels.gap, brute_force_gaps(x, cfg.frame_width))
    for t in range(40):
        for j in range(cfg.frame_width):
            c = x[t] + j
            seen = [s for s in range(40) if x[s] <= c < x[s] + cfg.frame_width]
            assert labels.first_seen[t, j] == seen[0]
            assert labels.sink_covered[t, j] == (seen[0] < cfg.sink_frames)
    assert (labels.gap > cfg.horizon).any()  # the check covered memory-critical columns


def test_window_labels_treat_the_window_start_as_the_beginning():
    episode = sample_episode(CFG, 11, 96)
    window = episode_labels(episode, 30, 60)
    np.testing.assert_array_equal(window.gap, brute_force_gaps(episode.camera_x[30:60], CFG.frame_width))
    assert (window.gap[0] == NEW).all()


def test_token_view_aggregates_its_columns():
    episode = sample_episode(replace(CFG, camera_mode="subtoken"), 5, 80)
    labels = episode_labels(episode)
    gaps = labels.gap.reshape(80, 8, 4)
    for t in range(80):
        for k in range(8):
            seen = [g for g in gaps[t, k] if g != NEW]
            assert labels.token_gap[t, k] == (min(seen) if seen else NEW)
            assert labels.token_memory_critical()[t, k] == all(g > 3 for g in gaps[t, k])
    token_mode = episode_labels(sample_episode(CFG, 5, 80))  # whole-token moves: a token's columns: one gap
    np.testing.assert_array_equal(token_mode.token_gap, token_mode.gap[:, ::4])


def test_memory_critical_columns_reappear_with_identical_pixels():
    episode = sample_episode(CFG, 21, 160)
    frames, labels = render_episode(episode), episode_labels(episode)
    compared = 0
    for t, j in zip(*np.nonzero(labels.memory_critical())):
        s = t - labels.gap[t, j]
        i = labels.columns[t, j] - episode.camera_x[s]  # the same world column on screen at frame s
        between = labels.columns[s + 1:t] - labels.columns[t, j]  # (t - s - 1, W): zero where on screen
        assert 0 <= i < 32 and not (between == 0).any()
        both = labels.world_mask[t, :, j] & labels.world_mask[s, :, i]
        np.testing.assert_array_equal(frames[t, both, j], frames[s, both, i])
        compared += int(both.sum())
    assert compared > 100
    world = episode.scene.image[:, labels.columns]  # (H, F, W, 3): the static panorama under each frame
    np.testing.assert_array_equal(frames[labels.world_mask], world.transpose(1, 0, 2, 3)[labels.world_mask])


def test_revisit_schedule_counts_every_memory_critical_column_once():
    labels = episode_labels(sample_episode(CFG, 4, 256))
    schedule = revisit_schedule(labels)
    critical = labels.memory_critical()
    assert sum(c["all"] for c in schedule.counts.values()) == critical.sum() == schedule.critical_columns
    assert all(c["sink"] + c["no_sink"] == c["all"] for c in schedule.counts.values())
    assert sum(c["sink"] for c in schedule.counts.values()) == (critical & labels.sink_covered).sum()
    assert sum(r.stop - r.start for r in schedule.revisits) == critical.sum()
    assert schedule.counts["96-192"]["all"] > 0 and schedule.new_columns == labels.new.sum()
    assert all(labels.gap[r.frame, r.start - labels.camera_x[r.frame]] == r.gap for r in schedule.revisits)


# ---- subject ----------------------------------------------------------------------------------------------

def test_subject_keeps_its_hidden_attributes_through_occlusion_and_keeps_its_hat():
    episode = sample_episode(CFG, 2, 128)
    frames, labels = render_episode(episode), episode_labels(episode)
    rgb, alpha = episode.sprites
    top, left = subject_screen_box(CFG)
    crops = frames[:, top:top + alpha.shape[1], left:left + alpha.shape[2]]  # (F, Hs, Ws, 3)
    change = labels.state_change_frame
    visible = np.flatnonzero(labels.subject_visibility == 1.0)
    hidden = np.flatnonzero(labels.subject_occluded)
    assert visible[0] < hidden[0] < visible[-1]  # an occlusion with the subject seen before and after
    for t in visible:
        state = int(t >= change)
        np.testing.assert_array_equal(crops[t][alpha[state]], rgb[state][alpha[state]])
    for t in hidden:  # a pillar in front hides part of the subject
        state = int(t >= change)
        assert not np.array_equal(crops[t][alpha[state]], rgb[state][alpha[state]])
    hat = alpha[1] & ~alpha[0]
    assert labels.state_changed[change:].all() and not labels.state_changed[:change].any()
    assert (visible < change).any() and (visible > change).any()  # the loop saw the hat persist
    assert not (crops[:change][:, hat] == HAT_RGB).all(axis=(1, 2)).any()


def test_hidden_attributes_are_visible_on_every_subject_shape():
    cfg = CFG
    for shape in range(cfg.subject_shapes):
        sprites = {}
        for badge in range(cfg.badges):
            for accent in range(cfg.accents):
                rgb, alpha = subject_sprites(cfg, SubjectAttributes(shape, 0, badge, accent))
                sprites[badge, accent] = rgb[0][alpha[0]].tobytes()
        assert len(set(sprites.values())) == cfg.badges * cfg.accents


# ---- rendering and conditioning ---------------------------------------------------------------------------

def test_render_shapes_and_windows():
    episode = sample_episode(CFG, 9, 48)
    frames = render_episode(episode)
    assert frames.shape == (48, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(render_episode(episode, 10, 25), frames[10:25])


def test_flicker_is_off_by_default_and_only_touches_its_squares():
    plain = sample_episode(CFG, 13, 64)
    flicker = sample_episode(replace(CFG, flicker_prob=1.0), 13, 64)
    assert not plain.flicker_on.any() and flicker.flicker_on.all()
    np.testing.assert_array_equal(plain.camera_x, flicker.camera_x)  # the distractor does not move the world
    a, b, mask = render_episode(plain), render_episode(flicker), episode_labels(flicker).world_mask
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a[mask], b[mask])
    assert (~mask).sum() > (~episode_labels(plain).world_mask).sum()


@pytest.mark.parametrize("mode, actions", [("token", 3), ("subtoken", 5)])
def test_conditioning_encodes_moves_pose_and_world_columns(mode, actions):
    cfg = replace(CFG, camera_mode=mode)
    episode = sample_episode(cfg, 17, 64)
    cond = episode.conditioning(8, 40, spatial=True, prompt_len=6)
    assert cond.prompt.shape == (1, 6) and (cond.prompt[0, 4:] == 0).all()
    assert 1 <= cond.prompt[0, :4].min() and cond.prompt[0, :4].max() < cfg.prompt_vocab_size
    assert cond.actions.shape == (1, 32, actions) and (cond.actions.sum(-1) == 1).all()
    moves = torch.tensor(cfg.moves, dtype=torch.float32)[cond.actions[0].argmax(-1)]  # (F,) action units
    pose = cond.pose[0, :, 0]
    torch.testing.assert_close(pose, torch.from_numpy(episode.camera_x[8:40]).float() / 4, rtol=0, atol=0)
    torch.testing.assert_close(pose[1:] - pose[:-1], moves[1:] * cfg.move_px / 4, rtol=0, atol=1e-6)
    assert cond.spatial_positions.shape == (1, 32, 8, 2) and (cond.spatial_positions[..., 0] == 0).all()
    columns = cond.spatial_positions[0, :, :, 1]
    torch.testing.assert_close(columns, pose[:, None] + torch.arange(8.0), rtol=0, atol=0)
    assert episode.conditioning().spatial_positions is None
    other = sample_episode(cfg, 18, 64)
    batch = stack_conditioning([episode.conditioning(0, 12), other.conditioning(30, 42)])
    assert batch.batch_size == 2 and batch.actions.shape == (2, 12, actions)
