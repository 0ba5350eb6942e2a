"""Training-data preparation (videos + captions -> latents + embeddings), resume, and a stage reading it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from context_forcing.cli import main
from context_forcing.io.video import write_mp4
from context_forcing.wan.prepare_data import PreparedLatents, fit_frames, read_frames

from .conftest import TINY


def make_videos(folder, fps: int = 32) -> None:
    """clip_a (48x40, 2 s), clip_b (32x32, 2 s), no_caption, too_short (0.25 s), at 32 fps."""
    g = torch.Generator().manual_seed(0)
    folder.mkdir()
    for name, (h, w), seconds in (
        ("clip_a", (40, 48), 2),
        ("clip_b", (32, 32), 2),
        ("no_caption", (32, 32), 1),
        ("too_short", (32, 32), 0.25),
    ):
        frames = torch.randint(0, 256, (int(seconds * fps), h, w, 3), generator=g, dtype=torch.uint8)
        write_mp4(folder / f"{name}.mp4", frames, fps=fps)
        if name != "no_caption":
            (folder / f"{name}.txt").write_text(f"a video called {name}\n")


def test_read_frames_resamples_to_16_fps_and_fit_crops(tmp_path) -> None:
    frames = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 16, 16, 3).contiguous() * 30
    write_mp4(tmp_path / "v.mp4", frames, fps=32)
    got = read_frames(tmp_path / "v.mp4", 10)
    assert got.shape == (4, 16, 16, 3)  # 8 frames at 32 fps = 0.25 s = 4 frames at 16 fps
    assert got[:, 0, 0, 0].tolist() == [0, 60, 120, 180]  # every other frame (lossless MP4)
    wide = torch.zeros(1, 20, 40, 3, dtype=torch.uint8)
    wide[:, :, 10:30] = 200  # the centre 20 columns
    fitted = fit_frames(wide, 16, 16)  # crop the centre 20x20, resize to 16x16
    assert fitted.shape == (1, 16, 16, 3) and bool((fitted == 200).all())


def test_prepare_command_is_resumable_and_matches_the_codec(wan_root, tmp_path, capsys) -> None:
    from context_forcing.wan.text_encoder import UMT5PromptEncoder
    from context_forcing.wan.vae import WanVAECodec

    make_videos(tmp_path / "videos")
    out = tmp_path / "data"
    args = [
        "prepare-wan-data",
        "--videos",
        str(tmp_path / "videos"),
        "--wan-dir",
        str(wan_root),
        "--out",
        str(out),
        "--seconds",
        "1.5",
        "--height",
        "32",
        "--width",
        "32",
        "--latent-dtype",
        "fp32",
    ]
    assert main(args) == 0
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [e["name"] for e in index] == ["clip_a", "clip_b"]
    skipped = {
        json.loads(line)["video"]: json.loads(line)["reason"]
        for line in (out / "skipped.jsonl").read_text().splitlines()
    }
    assert skipped["no_caption.mp4"].startswith("no caption file")
    assert skipped["too_short.mp4"] == "4 frames at 16 fps, 21 needed"
    codec = WanVAECodec.from_pretrained(wan_root)
    from safetensors.torch import load_file

    stored = load_file(str(out / "latents" / "clip_a.safetensors"))["latents"]
    expected = codec.encode(fit_frames(read_frames(tmp_path / "videos" / "clip_a.mp4", 21), 32, 32)[None])[0]
    assert stored.shape == (6, 4, 4, 4)
    assert torch.equal(stored, expected)
    text = UMT5PromptEncoder.from_pretrained(wan_root)
    embeds = load_file(str(out / "prompts" / f"{index[0]['prompt_key']}.safetensors"))["prompt_embeds"]
    assert torch.equal(embeds, text.encode(["a video called clip_a"])[0])
    mtime = (out / "latents" / "clip_a.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # resume: nothing encoded again
    assert (out / "latents" / "clip_a.safetensors").stat().st_mtime_ns == mtime
    assert main([*args[:-2], "--height", "30"]) == 2
    assert "--height/--width: got 30 x 32" in capsys.readouterr().err


def fake_prepared(folder, frames: int = 48, clips: int = 3):
    from safetensors.torch import save_file

    (folder / "latents").mkdir(parents=True)
    (folder / "prompts").mkdir()
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(clips):
        save_file(
            {"latents": torch.randn(frames, 4, 4, 4, generator=g)}, str(folder / f"latents/c{i}.safetensors")
        )
        save_file(
            {"prompt_embeds": torch.randn(512, TINY.text_dim, generator=g)},
            str(folder / f"prompts/k{i}.safetensors"),
        )
        rows.append(
            json.dumps(
                {
                    "name": f"c{i}",
                    "latents": f"latents/c{i}.safetensors",
                    "prompt": "x",
                    "prompt_key": f"k{i}",
                    "frames": frames,
                }
            )
            + "\n"
        )
    (folder / "index.jsonl").write_text("".join(rows))


def test_prepared_latents_are_deterministic_resumable_and_split_by_rank(tmp_path) -> None:
    fake_prepared(tmp_path)
    data = PreparedLatents(tmp_path, batch=2, seed=5, latent_shape=(4, 4, 4))
    first, cond = data.next_clip(9)
    assert first.shape == (2, 9, 4, 4, 4) and cond.prompt_embeds.shape == (2, 512, TINY.text_dim)
    second, _ = data.next_clip(9)
    resumed = PreparedLatents(tmp_path, batch=2, seed=5)
    resumed.load_state_dict({"step": 1})
    assert torch.equal(resumed.next_clip(9)[0], second)
    ranks = [PreparedLatents(tmp_path, batch=1, seed=5, rank=r, world=2).next_clip(9)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(ranks), first)  # two processes see the one-process batch, split
    with pytest.raises(ValueError, match="has 48 latent frames; the stage asks for 60"):
        data.next_clip(60)
    with pytest.raises(ValueError, match=r"latent frames \(4, 4, 4\); the run expects \(16, 60, 104\)"):
        PreparedLatents(tmp_path, batch=1, latent_shape=(16, 60, 104)).next_clip(3)


def test_teacher_stage_trains_on_prepared_latents(tmp_path) -> None:
    from context_forcing.presets import get_preset
    from context_forcing.training.config import for_preset
    from context_forcing.training.registry import build_stage

    fake_prepared(tmp_path)
    wan = get_preset("wan2.1-1.3b")
    run = replace(wan, model=TINY, video=replace(wan.video, latent_height=4, latent_width=4))
    train = for_preset("teacher", "tiny")
    stage = build_stage("teacher", run, train, None, None, data=PreparedLatents(tmp_path, train.batch))
    metrics = stage.train_step(0)
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0


def test_wan_training_configs_are_paper_scale() -> None:
    from context_forcing.training.config import for_preset

    stage2 = for_preset("stage2", "wan2.1-1.3b")
    assert (stage2.precision, stage2.activation_checkpointing, stage2.batch, stage2.accumulation) == (
        "bf16",
        True,
        1,
        8,
    )
    assert (stage2.generator.lr, stage2.critic.lr, stage2.critic.betas, stage2.dmd.critic_ratio) == (
        2e-6,
        4e-7,
        (0.5, 0.95),
        5,
    )
    assert (stage2.dmd.guidance, for_preset("stage1", "wan2.1-1.3b").dmd.guidance) == (6.0, 4.0)
    assert (stage2.curriculum.n_min, stage2.curriculum.n_max_end, stage2.curriculum.ramp_steps) == (
        84,
        105,
        600,
    )
    assert for_preset("teacher", "wan2.1-1.3b").generator.lr == 1e-4
