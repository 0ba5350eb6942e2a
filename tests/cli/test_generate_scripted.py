"""`generate --prompts FILE` (timed prompt switches) and `--continue VIDEO`
(prefill from an MP4 through the codec)."""

from __future__ import annotations

import json

import pytest
import torch

from context_forcing.cli import main
from context_forcing.data.episodes import ground_truth_pixels, panworld_episodes
from context_forcing.io.video import read_mp4, write_mp4
from context_forcing.presets import tiny

PROMPT = {"palette": 1, "shape": 2, "colour": 3, "density": 0}


def _generate(tmp_path, name, *extra):
    out = tmp_path / f"{name}.mp4"
    assert (
        main(
            [
                "generate",
                "--preset",
                "tiny",
                "--random-weights",
                "--seconds",
                "3",
                "--seed",
                "0",
                "--out",
                str(out),
                "--report",
                str(tmp_path / f"{name}.json"),
                *extra,
            ]
        )
        == 0
    )
    return read_mp4(out), json.loads((tmp_path / f"{name}.json").read_text())


def test_prompt_switches_act_from_their_chunk_on(tmp_path):
    script = tmp_path / "prompts.json"
    script.write_text(
        json.dumps(
            [
                {"at": 1.4, "prompt": PROMPT, "policy": "recache"},
                {"at": 2.2, "prompt": {**PROMPT, "palette": 0}, "policy": "flush"},
            ]
        )
    )
    plain, _ = _generate(tmp_path, "plain")
    switched, report = _generate(tmp_path, "switched", "--prompts", str(script))
    assert report["prompt_switches"] == [
        {"at": 1.4, "frame": 6, "policy": "recache"},
        {"at": 2.2, "frame": 9, "policy": "flush"},
    ]
    torch.testing.assert_close(switched[:6], plain[:6], rtol=0, atol=0)  # 1.4 s = frame 5.6: the chunk at 6
    assert not torch.equal(switched[6:9], plain[6:9])


def test_continue_equals_prefilling_the_same_frames(tmp_path):
    run = tiny()
    episode = panworld_episodes(run, 0, 1, 12)[0]
    clip = ground_truth_pixels(run, episode, 0, 7)  # 7 frames: the first is not a whole chunk and is left out
    write_mp4(tmp_path / "clip.mp4", clip, fps=4, scale=3)
    continued, report = _generate(tmp_path, "continued", "--continue", str(tmp_path / "clip.mp4"))
    assert report["prefill_frames"] == 6 and report["latent_frames"] == 18 and continued.shape[0] == 18
    torch.testing.assert_close(continued[:6], clip[1:], rtol=0, atol=0)
    # the leading frame was left out: the same clip without it continues identically
    write_mp4(tmp_path / "whole.mp4", clip[1:], fps=4, scale=1)
    again, _ = _generate(tmp_path, "again", "--continue", str(tmp_path / "whole.mp4"))
    torch.testing.assert_close(again, continued, rtol=0, atol=0)


def test_continue_matches_prefill_seconds_on_the_episode_opening(tmp_path):
    run = tiny()
    episode = panworld_episodes(run, 0, 1, 18)[0]  # 1.5 s prefill + 3 s: the episode both runs sample
    write_mp4(tmp_path / "opening.mp4", ground_truth_pixels(run, episode, 0, 6), fps=4, scale=2)
    continued, _ = _generate(tmp_path, "continued", "--continue", str(tmp_path / "opening.mp4"))
    prefilled, _ = _generate(tmp_path, "prefilled", "--prefill-seconds", "1.5")
    torch.testing.assert_close(continued, prefilled, rtol=0, atol=0)


BAD_SCRIPTS = [
    ("not json", "is not JSON"),
    ("{}", "must be a non-empty JSON list"),
    (json.dumps([{"at": 1, "prompt": PROMPT, "mood": "x"}]), "switch 0: unknown field(s) mood"),
    (
        json.dumps([{"at": 1, "prompt": PROMPT, "policy": "reset"}]),
        "switch 0: policy must be one of keep, recache, flush",
    ),
    (json.dumps([{"at": 2, "prompt": PROMPT}, {"at": 1, "prompt": PROMPT}]), "switch 1: at 1 is earlier"),
    (json.dumps([{"at": 3, "prompt": PROMPT}]), "switch 0: at must be a number of seconds in [0, 3)"),
    (
        json.dumps([{"at": 0, "prompt": {**PROMPT, "shape": 9}}]),
        "switch 0: prompt attribute shape must be an integer in [0, 3], got 9",
    ),
    (json.dumps([{"at": 0, "prompt": "a red cat"}]), "switch 0: prompt must be an object"),
]


@pytest.mark.parametrize("text,message", BAD_SCRIPTS)
def test_bad_prompt_scripts_exit_2_before_any_work(tmp_path, capsys, text, message):
    (tmp_path / "p.json").write_text(text)
    args = [
        "generate",
        "--preset",
        "tiny",
        "--random-weights",
        "--seconds",
        "3",
        "--out",
        str(tmp_path / "v.mp4"),
        "--prompts",
        str(tmp_path / "p.json"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        message in err
        and err.startswith("context-forcing generate: error: --prompts:")
        and err.count("\n") == 1
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_bad_continue_inputs_exit_2(tmp_path, capsys):
    base = [
        "generate",
        "--preset",
        "tiny",
        "--random-weights",
        "--seconds",
        "1",
        "--out",
        str(tmp_path / "v.mp4"),
    ]
    write_mp4(tmp_path / "wide.mp4", torch.zeros(6, 8, 16, 3, dtype=torch.uint8), fps=4)
    (tmp_path / "text.mp4").write_text("not a video")
    cases = [
        (["--continue", str(tmp_path / "wide.mp4")], "has 8x16 frames; they must be 8x8 times one integer"),
        (["--continue", str(tmp_path / "missing.mp4")], "--continue: cannot read"),
        (["--continue", str(tmp_path / "text.mp4")], "--continue: cannot read"),
        (["--continue", str(tmp_path / "wide.mp4"), "--prefill-seconds", "1.5"], "cannot be combined"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "v.mp4").exists()
