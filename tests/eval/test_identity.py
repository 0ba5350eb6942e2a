"""M3 decoders read the subject's hidden attributes and hat from frames, exactly on ground truth."""

from __future__ import annotations

from itertools import pairwise

import pytest

from context_forcing.data.panworld import PanWorldConfig, render_episode, sample_episode
from context_forcing.eval.cases import WRONG, chance_world, make_cases
from context_forcing.eval.identity import decode_attributes, decode_hat, identity_counts, identity_frames

SEEDS = range(1_000_000, 1_000_008)


@pytest.fixture(scope="module")
def episodes():
    return [sample_episode(PanWorldConfig(), seed, 128) for seed in SEEDS]


def visible_frames(episode):
    return identity_frames(episode.subject_visibility, -1, 0, episode.frames)["visible"]


def test_attribute_decoder_is_accurate_on_ground_truth(episodes):
    correct = total = 0
    for episode in episodes:
        frames = visible_frames(episode)
        subject = episode.layout.subject
        pixels = render_episode(episode)[frames]
        decoded = decode_attributes(pixels, episode.cfg, subject.shape, subject.colour)
        correct += int((decoded == [subject.badge, subject.accent]).all(axis=1).sum())
        total += len(frames)
    assert total > 500 and correct / total >= 0.95


def test_hat_decoder_is_accurate_on_ground_truth(episodes):
    correct = total = hats = 0
    for episode in episodes:
        frames = visible_frames(episode)
        truth = episode.state_index[frames].astype(bool)
        correct += int((decode_hat(render_episode(episode)[frames], episode.cfg) == truth).sum())
        total, hats = total + len(frames), hats + int(truth.sum())
    assert 0 < hats < total and correct / total >= 0.95  # both states occur


def test_decoders_tell_other_subjects_apart(episodes):
    # decode episode A's frames as if they showed episode B's class: wrong attributes unless both agree
    wrong = right = 0
    for a, b in pairwise(episodes):
        sa, sb = a.layout.subject, b.layout.subject
        if (sa.shape, sa.colour) != (sb.shape, sb.colour) or (sa.badge, sa.accent) == (sb.badge, sb.accent):
            continue
        decoded = decode_attributes(render_episode(a)[visible_frames(a)], a.cfg, sa.shape, sa.colour)
        right += int((decoded == [sa.badge, sa.accent]).all(axis=1).sum())
        wrong += int((decoded == [sb.badge, sb.accent]).all(axis=1).sum())
    assert wrong == 0


def test_identity_after_occlusion_and_state_change():
    cases = make_cases(range(1_000_000, 1_000_003), seconds=32)
    totals = {}
    for case in cases:
        truth = identity_counts(case, case.truth, "p1")
        for group, (correct, count) in truth.items():
            assert correct == count, group
            totals[group] = totals.get(group, 0) + count
        # a subject without its hat (the prefix frozen before the change) fails after the change
        frozen = case.truth.copy()
        frozen[case.t0:] = case.truth[case.episode.state_change_frame - 1]
        counts = identity_counts(case, frozen, "p1")
        assert counts["hat_after_state_change"][0] == 0 or counts["hat_after_state_change"][1] == 0
        # another world's subject shows other hidden attributes (unless it drew the same, 1 in 36)
        drawn = chance_world(case.episode, WRONG).layout.subject
        correct, count = identity_counts(case, case.wrong, "p1")["visible"]
        true = case.episode.layout.subject
        if (drawn.badge, drawn.accent) != (true.badge, true.accent):
            assert correct <= 0.2 * count
    assert totals["after_occlusion"] > 0 and totals["after_state_change"] > 0
