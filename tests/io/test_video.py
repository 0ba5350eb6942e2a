"""MP4 writing: frame counts, scaled sizes, fidelity, odd sizes, streaming chunks, atomicity, validation."""

import numpy as np
import pytest
import torch

from context_forcing.io import VideoWriter, read_mp4, write_mp4


def random_frames(seed: int, t: int = 4, h: int = 6, w: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, 3), generator=g, dtype=torch.uint8)


def smooth_frames(t: int = 4, h: int = 12, w: int = 16) -> torch.Tensor:
    """Gentle gradients that drift over time: the kind of content lossy H.264 keeps well."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frames = [torch.stack([60 + 4 * x + i, 80 + 5 * y, 200 - 2 * x - 3 * y + 2 * i], dim=-1)
              for i in range(t)]
    return torch.stack(frames).to(torch.uint8)  # values stay in [60, 200] for h, w <= 16


def upscale(frames: torch.Tensor, scale: int) -> torch.Tensor:
    return frames.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


@pytest.mark.parametrize("h, w, scale", [(6, 8, 1), (5, 7, 1), (5, 7, 3), (1, 1, 2)])
def test_lossless_round_trip_is_exact(tmp_path, h, w, scale):
    # libx264rgb at qp 0 stores RGB losslessly with no chroma subsampling, so exactness is the contract.
    frames = random_frames(0, h=h, w=w)
    path = tmp_path / "v.mp4"
    assert write_mp4(path, frames, fps=4, scale=scale) == 4
    video = read_mp4(path)
    assert video.shape == (4, h * scale, w * scale, 3) and video.dtype == torch.uint8
    torch.testing.assert_close(video, upscale(frames, scale), rtol=0, atol=0)


def test_chunks_from_a_generator_equal_one_tensor(tmp_path):
    frames = random_frames(1, t=7)
    count = write_mp4(tmp_path / "v.mp4", (frames[i:i + 3].numpy() for i in range(0, 7, 3)), fps=16)
    assert count == 7
    torch.testing.assert_close(read_mp4(tmp_path / "v.mp4"), frames, rtol=0, atol=0)


@pytest.mark.parametrize("h, w, scale", [(12, 16, 1), (11, 15, 1), (11, 15, 2)])
def test_compatible_quality_pads_odd_sizes_and_stays_close(tmp_path, h, w, scale):
    frames = smooth_frames(h=h, w=w)
    path = tmp_path / "v.mp4"
    assert write_mp4(path, frames, fps=4, scale=scale, quality="compatible") == 4
    video = read_mp4(path)
    out_h, out_w = h * scale + (h * scale) % 2, w * scale + (w * scale) % 2  # yuv420p padded to even
    assert video.shape == (4, out_h, out_w, 3)
    # Lossy: RGB -> limited-range YUV rounding, 2x2 chroma subsampling and crf 12 quantisation. Measured on
    # this content: mean 1.4-2.3, max 5-9 levels out of 255; the bounds leave a margin for encoder builds.
    error = (video[:, :h * scale, :w * scale].float() - upscale(frames, scale).float()).abs()
    assert error.mean() < 3.5 and error.max() <= 16, (error.mean(), error.max())


def test_stream_rate_is_fps(tmp_path):
    import av

    write_mp4(tmp_path / "v.mp4", random_frames(0), fps=12.5)
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert container.streams.video[0].average_rate == 12.5


def test_crash_inside_writer_leaves_no_file_and_no_temp(tmp_path):
    path = tmp_path / "out" / "v.mp4"
    with pytest.raises(RuntimeError, match="model diverged"):
        with VideoWriter(path, fps=4, scale=2) as writer:
            writer.write(random_frames(0))
            raise RuntimeError("model diverged")
    assert list((tmp_path / "out").iterdir()) == []


def test_crash_keeps_an_existing_file_untouched(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"previous video")

    def chunks():
        yield random_frames(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_mp4(path, chunks(), fps=4)
    assert path.read_bytes() == b"previous video"
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_writer_appears_only_at_close(tmp_path):
    path = tmp_path / "v.mp4"
    writer = VideoWriter(path, fps=4).open()
    writer.write(random_frames(0))
    assert not path.exists()
    assert writer.close() == 4
    assert read_mp4(path).shape == (4, 6, 8, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_writing_no_frames_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="no frames were written"):
        write_mp4(tmp_path / "v.mp4", [], fps=4)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"fps": 0}, r"fps must be a finite number > 0, got 0"),
    ({"fps": float("nan")}, r"fps must be a finite number > 0, got nan"),
    ({"fps": 4, "scale": 0}, r"scale must be an integer >= 1, got 0"),
    ({"fps": 4, "scale": 1.5}, r"scale must be an integer >= 1, got 1.5"),
    ({"fps": 4, "quality": "best"}, r"quality must be one of \['compatible', 'lossless'\], got 'best'"),
])
def test_writer_arguments_are_validated_before_any_file(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / "v.mp4", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunk, message", [
    (torch.zeros(2, 4, 4, 3), r"frames must have dtype uint8, got torch.float32"),
    (np.zeros((2, 4, 4, 3), dtype=np.int64), r"frames must have dtype uint8, got int64"),
    (torch.zeros(4, 4, 3, dtype=torch.uint8), r"must have shape \(T, H, W, 3\).*got \(4, 4, 3\)"),
    (torch.zeros(2, 4, 4, 4, dtype=torch.uint8), r"must have shape \(T, H, W, 3\).*got \(2, 4, 4, 4\)"),
    ([[0]], r"frames must be a uint8 tensor or numpy array"),
])
def test_bad_frames_are_rejected_and_leave_nothing(tmp_path, chunk, message):
    with pytest.raises(ValueError, match=message):
        write_mp4(tmp_path / "v.mp4", chunk, fps=4)
    assert list(tmp_path.iterdir()) == []


def test_chunks_must_keep_one_size(tmp_path):
    with pytest.raises(ValueError, match=r"size \(6, 6\) differs from the first chunk's \(6, 8\)"):
        write_mp4(tmp_path / "v.mp4", [random_frames(0), random_frames(1, w=6)], fps=4)
    assert list(tmp_path.iterdir()) == []
