"""End to end: tiny random Wan transformer + VAE + umT5 in each layout, via `from_pretrained` and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from context_forcing.cli import main
from context_forcing.io.video import read_mp4
from context_forcing.model.wan_adapter import to_wan_original
from context_forcing.presets import get_preset
from context_forcing.wan.loader import save_diffusers
from context_forcing.wan.pipeline import WanStreamingPipeline

from .conftest import TINY, tiny_transformer

SIZE = dict(height=32, width=32)  # latent 4x4, 4 tokens per frame


@pytest.fixture(scope="module")
def student_files(wan_root, tmp_path_factory):
    """One student's weights as a CF model.pt (FSDP-prefixed EMA), a diffusers folder and our checkpoint."""
    from dataclasses import replace

    from context_forcing.model.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("students")
    student = tiny_transformer(seed=11)
    original = to_wan_original(student.state_dict(), TINY)
    torch.save(
        {
            "generator": {f"model.{k}": v for k, v in original.items()},
            "generator_ema": {f"model._fsdp_wrapped_module.{k}": v for k, v in original.items()},
            "critic": None,
            "step": 1,
        },
        root / "model.pt",
    )
    save_diffusers(student, root / "diffusers")
    save_checkpoint(root / "ours", replace(get_preset("wan2.1-1.3b"), model=TINY), student.state_dict())
    return {"training-file": root / "model.pt", "diffusers": root / "diffusers", "ours": root / "ours"}


def test_every_layout_gives_the_same_video(wan_root, student_files) -> None:
    videos = {}
    for layout, path in student_files.items():
        pipe = WanStreamingPipeline.from_pretrained(wan_root, path)
        chunks = list(pipe("a red fox runs through the snowy forest", seconds=2.25, seed=3, **SIZE))
        assert [c.shape[1] for c in chunks] == [9, 12, 12]  # 9 latents -> 1 + 4 * 8 = 33 frames
        videos[layout] = torch.cat(chunks, dim=1)
    first = videos["training-file"]
    assert first.shape == (1, 33, 32, 32, 3) and first.float().std() > 1
    assert all(torch.equal(v, first) for v in videos.values())
    base = torch.cat(
        list(
            WanStreamingPipeline.from_pretrained(wan_root)(
                "a red fox runs through the snowy forest", seconds=2.25, seed=3, **SIZE
            )
        ),
        dim=1,
    )
    assert not torch.equal(base, first)  # the checkpoint's weights were used, not the folder's transformer


def test_streamed_frames_equal_decoding_the_whole_video_at_the_end(wan_root, student_files) -> None:
    pipe = WanStreamingPipeline.from_pretrained(wan_root, student_files["ours"])
    frames, latents = zip(*pipe.stream(["a boat sails", "a cat sleeps"], seconds=1.5, seed=0, **SIZE))
    streamed = torch.cat(frames, dim=1)
    whole = pipe.vae.decode(torch.cat(latents, dim=1))  # the official path: decode all latents at the end
    assert streamed.shape == (2, 21, 32, 32, 3)
    assert torch.equal(streamed, whole)
    assert not torch.equal(streamed[0], streamed[1])  # two prompts, two different videos
    assert pipe.attended == [3, 6] and pipe.steady_from_chunk() == 1  # chunk 1 sees the sink + itself
    summary = pipe.timings.summary(pipe.steady_from_chunk())
    assert summary["denoising"]["chunks"] == 2 and summary["decoding"]["seconds"] > 0
    assert summary["text_encoding"]["seconds"] > 0


def test_official_cast_runs_in_bf16_close_to_fp32(wan_root, student_files) -> None:
    prompt = "waves crash against the rocks"
    fp32 = WanStreamingPipeline.from_pretrained(wan_root, student_files["diffusers"])
    bf16 = WanStreamingPipeline.from_pretrained(wan_root, student_files["diffusers"], cast="official")
    assert next(bf16.transformer.parameters()).dtype == torch.bfloat16
    assert bf16.vae.vae.decoder.conv_in.weight.dtype == torch.bfloat16
    a = torch.cat(list(fp32(prompt, seconds=0.75, seed=1, **SIZE)), dim=1).float()
    b = torch.cat(list(bf16(prompt, seconds=0.75, seed=1, **SIZE)), dim=1).float()
    assert a.shape == b.shape == (1, 9, 32, 32, 3)
    assert 0 < (a - b).abs().mean() < 12  # bf16 rounding, not a different video (pixel values 0..255)


def test_cli_generate_streams_to_mp4_with_stage_report(wan_root, student_files, tmp_path) -> None:
    out, report = tmp_path / "x.mp4", tmp_path / "x.json"
    code = main(
        [
            "generate",
            "--preset",
            "wan2.1-1.3b",
            "--checkpoint",
            str(student_files["training-file"]),
            "--wan-dir",
            str(wan_root),
            "--prompt",
            "a cat sleeps on a warm windowsill",
            "--seconds",
            "1.5",
            "--out",
            str(out),
            "--report",
            str(report),
            "--height",
            "32",
            "--width",
            "32",
            "--prompt-cache",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    video = read_mp4(out)
    assert video.shape == (21, 32, 32, 3)
    pipe = WanStreamingPipeline.from_pretrained(wan_root, student_files["training-file"])
    expected = torch.cat(list(pipe("a cat sleeps on a warm windowsill", seconds=1.5, seed=0, **SIZE)), dim=1)[
        0
    ]
    assert torch.equal(video, expected)  # lossless MP4: the CLI wrote exactly the pipeline's frames
    data = json.loads(report.read_text())
    assert data["frames_written"] == 21 and data["memory"] == "sink3-slow12-fast6:similarity0.95:bounded"
    assert set(data["stages"]) == {"text_encoding", "denoising", "decoding"}
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "--prompt: preset 'wan2.1-1.3b' is text-to-video"),
        (["--prompt", "x", "--dtype", "fp16"], "--dtype: got 'fp16'; allowed: fp32, bf16"),
        (
            ["--prompt", "x", "--height", "30"],
            "--height/--width: height x width = 30 x 32: both must be positive multiples of 16 x 16",
        ),
        (["--prompt", "x", "--side-by-side"], "--side-by-side: not available for preset 'wan2.1-1.3b'"),
        (["--prompt", "x", "--continue", "/nonexistent.mp4"], "--continue: cannot read '/nonexistent.mp4'"),
        (["--prompt", "x", "--memory", "sink4-slow12-fast6"], "--memory: bad memory layout"),
        (
            ["--prompt", "x", "--wan-dir", "/nonexistent"],
            "--wan-dir: '/nonexistent' is not a Wan2.1 diffusers folder",
        ),
    ],
)
def test_cli_errors_before_any_work(wan_root, student_files, tmp_path, capsys, extra, message) -> None:
    args = [
        "generate",
        "--preset",
        "wan2.1-1.3b",
        "--checkpoint",
        str(student_files["ours"]),
        "--seconds",
        "1",
        "--out",
        str(tmp_path / "v.mp4"),
        "--width",
        "32",
    ]
    if "--wan-dir" not in extra:
        args += ["--wan-dir", str(wan_root)]
    if "--height" not in extra:
        args += ["--height", "32"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_preset_has_the_released_inference_settings() -> None:
    from context_forcing.diffusion.schedule import student_sigmas

    run = get_preset("wan2.1-1.3b")
    assert (run.chunk, run.video.fps, 8 * run.video.latent_height, 8 * run.video.latent_width) == (
        3,
        16,
        480,
        832,
    )
    assert run.memory.layout == "sink3-slow12-fast6:similarity0.95:bounded"
    sigmas = student_sigmas(run.sampler.student_timesteps, run.sampler.shift)
    torch.testing.assert_close(
        sigmas * 1000, torch.tensor([1000.0, 937.5, 833.3333, 625.0]), atol=1e-3, rtol=0
    )
    assert run.tokens_per_frame == 1560


def test_continuation_commits_the_opening_and_continues_the_decoder(wan_root, student_files) -> None:
    pipe = WanStreamingPipeline.from_pretrained(wan_root, student_files["ours"])
    opening = torch.cat(list(pipe("a boat sails", seconds=1.5, seed=0, **SIZE)), dim=1)  # (1, 21, 32, 32, 3)
    frames, latents = zip(*pipe.stream("a boat sails", seconds=0.75, seed=1, opening=opening, **SIZE))
    assert [f.shape[1] for f in frames] == [12]  # a continuing chunk: 4 frames per latent, no first frame
    assert pipe.session.frames_done == 9 and pipe.attended == [9]  # sink 3 + fast 3 + the chunk
    # the stream decoder continued from the opening's latents: same pixels as one decode of everything
    whole = pipe.vae.decode(torch.cat([pipe.vae.encode(opening), latents[0]], dim=1))
    assert torch.equal(frames[0], whole[:, 21:])
    with pytest.raises(ValueError, match="opening has 20 frames; .* 9, 21, 33, ... frames"):
        next(pipe.stream("a boat sails", seconds=1, opening=opening[:, :20], **SIZE))


def test_cli_continue_writes_opening_then_continuation(wan_root, student_files, tmp_path) -> None:
    common = ["generate", "--preset", "wan2.1-1.3b", "--checkpoint", str(student_files["ours"]), "--wan-dir",
              str(wan_root), "--prompt", "a cat sleeps", "--height", "32", "--width", "32"]
    assert main([*common, "--seconds", "1.5", "--out", str(tmp_path / "first.mp4")]) == 0
    first = read_mp4(tmp_path / "first.mp4")
    assert main([*common, "--seconds", "0.75", "--continue", str(tmp_path / "first.mp4"),
                 "--out", str(tmp_path / "more.mp4")]) == 0
    more = read_mp4(tmp_path / "more.mp4")
    assert more.shape == (21 + 12, 32, 32, 3)
    assert torch.equal(more[:21], first)
