"""MP4 output and input with PyAV (H.264 through libx264), written chunk by chunk and atomically.

Two qualities:
- `lossless` (default): libx264rgb at qp 0, RGB stored as planar GBR with no chroma subsampling, so a
  read-back is bit-exact and any frame size works. The stream is H.264 "High 4:4:4 Predictive": ffmpeg,
  VLC and mpv play it; browsers and QuickTime do not.
- `compatible`: libx264, yuv420p, crf 12 (visually near-lossless, not exact). Plays everywhere. yuv420p
  needs even sizes, so an odd height or width is padded by repeating the last row or column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from numbers import Integral, Real
from pathlib import Path
from types import TracebackType

import av
import numpy as np
import torch
from torch import Tensor

from context_forcing.io.files import PathLike, atomic_write, commit_temp, discard_temp, reserve_temp

Frames = Tensor | np.ndarray

# quality -> (encoder, pixel format fed to the encoder, encoder options, pad to even size)
QUALITIES: dict[str, tuple[str, str, dict[str, str], bool]] = {
    "lossless": ("libx264rgb", "rgb24", {"qp": "0"}, False),
    "compatible": ("libx264", "yuv420p", {"crf": "12"}, True),
}


class VideoWriter:
    """Writes RGB uint8 chunks `(T, H, W, 3)` to an MP4 as they arrive; the file appears only on close.

    Use as a context manager: an exception inside the `with` removes the temporary and leaves no file
    (and leaves an existing file at `path` untouched). Constructing opens nothing; `open()` does.
    """

    def __init__(self, path: PathLike, fps: float, scale: int = 1, quality: str = "lossless") -> None:
        _check_fps(fps)
        _check_scale(scale)
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {sorted(QUALITIES)}, got {quality!r}")
        self.path = Path(path)
        self.fps = fps
        self.scale = int(scale)
        self.quality = quality
        self.frames_written = 0
        self._temp: Path | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._size: tuple[int, int] | None = None  # (H, W) of the input frames, fixed by the first chunk

    def open(self) -> VideoWriter:
        """Reserve the temporary file and open the container."""
        if self._temp is not None:
            raise RuntimeError(f"VideoWriter for {str(self.path)!r} is already open")
        self.frames_written, self._stream, self._size = 0, None, None  # a reopened writer starts afresh
        self._temp = reserve_temp(self.path)
        try:
            self._container = av.open(str(self._temp), mode="w", format="mp4")
        except BaseException:
            self.abort()
            raise
        return self

    def write(self, chunk: Frames) -> int:
        """Encode a chunk of frames `(T, H, W, 3)` uint8 (tensor or array); return T."""
        if self._container is None:
            raise RuntimeError(f"VideoWriter for {str(self.path)!r} is not open; call open() or use `with`")
        frames = _as_uint8_frames(chunk)
        if frames.shape[0] == 0:
            return 0
        if self._stream is None:
            self._stream = self._add_stream(frames.shape[1], frames.shape[2])
        elif frames.shape[1:3] != self._size:
            raise ValueError(f"chunk frame size {frames.shape[1:3]} differs from the first chunk's "
                             f"{self._size}")
        for frame in self._prepare(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = self.frames_written  # time base 1/fps: one tick per frame
            self._container.mux(self._stream.encode(video_frame))
            self.frames_written += 1
        return frames.shape[0]

    def close(self) -> int:
        """Flush the encoder, finish the file and rename it into place; return the frames written."""
        if self._container is None:
            raise RuntimeError(f"VideoWriter for {str(self.path)!r} is not open")
        try:
            if self._stream is None:
                raise ValueError(f"no frames were written; {str(self.path)!r} was not created")
            self._container.mux(self._stream.encode(None))  # drain frames the encoder still holds
            self._container.close()
            self._container = None
            commit_temp(self._temp, self.path)
        except BaseException:
            self.abort()
            raise
        self._temp = None
        return self.frames_written

    def abort(self) -> None:
        """Drop everything written so far: close the container and remove the temporary file."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the container may be half-written; removing the file is what matters
                pass
            self._container = None
        if self._temp is not None:
            discard_temp(self._temp)
            self._temp = None

    def __enter__(self) -> VideoWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _add_stream(self, height: int, width: int) -> av.VideoStream:
        """Configure the H.264 stream for frames of the given input size."""
        self._size = (height, width)
        codec, pix_fmt, options, pad_even = QUALITIES[self.quality]
        out_h, out_w = height * self.scale, width * self.scale
        if pad_even:
            out_h, out_w = out_h + out_h % 2, out_w + out_w % 2
        # limit_denominator keeps a float fps such as 29.97 a small rational the muxer accepts.
        stream = self._container.add_stream(codec, rate=Fraction(float(self.fps)).limit_denominator(10_000))
        stream.height, stream.width, stream.pix_fmt = out_h, out_w, pix_fmt
        stream.options = dict(options)
        return stream

    def _prepare(self, frames: np.ndarray) -> np.ndarray:
        """Nearest-neighbour upscale by `scale`, then pad to even size if the quality needs it."""
        if self.scale > 1:
            frames = frames.repeat(self.scale, axis=1).repeat(self.scale, axis=2)  # (T, sH, sW, 3)
        pad_h, pad_w = self._stream.height - frames.shape[1], self._stream.width - frames.shape[2]
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        return np.ascontiguousarray(frames)


def write_mp4(path: PathLike, frames: Frames | Iterable[Frames], fps: float, scale: int = 1,
              quality: str = "lossless") -> int:
    """Write frames `(T, H, W, 3)` uint8, or an iterable of such chunks, to an MP4; return frames written.

    `scale` is an integer nearest-neighbour upscale (so 32x32 frames are visible); `quality` is
    `lossless` (bit-exact, libx264rgb qp 0) or `compatible` (yuv420p crf 12); see the module docstring.
    """
    chunks = [frames] if isinstance(frames, (Tensor, np.ndarray)) else frames
    with VideoWriter(path, fps, scale=scale, quality=quality) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return writer.frames_written


def read_mp4(path: PathLike) -> Tensor:
    """Decode the first video stream of a file to RGB frames `(T, H, W, 3)` uint8."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        if not frames:
            return torch.zeros(0, stream.height, stream.width, 3, dtype=torch.uint8)
    return torch.from_numpy(np.stack(frames))


def _as_uint8_frames(chunk: Frames) -> np.ndarray:
    """Validate a chunk `(T, H, W, 3)` uint8 and return it as a CPU numpy array."""
    if isinstance(chunk, Tensor):
        if chunk.dtype != torch.uint8:
            raise ValueError(f"frames must have dtype uint8, got {chunk.dtype}")
        chunk = chunk.detach().cpu().numpy()
    elif isinstance(chunk, np.ndarray):
        if chunk.dtype != np.uint8:
            raise ValueError(f"frames must have dtype uint8, got {chunk.dtype}")
    else:
        raise ValueError(f"frames must be a uint8 tensor or numpy array (T, H, W, 3), "
                         f"got {type(chunk).__name__}")
    if chunk.ndim != 4 or chunk.shape[-1] != 3 or chunk.shape[1] == 0 or chunk.shape[2] == 0:
        raise ValueError(f"frames must have shape (T, H, W, 3) with H, W > 0, got {tuple(chunk.shape)}")
    return chunk


def _check_fps(fps: float) -> None:
    """fps must be a finite number > 0."""
    if isinstance(fps, bool) or not isinstance(fps, Real) or not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")


def _check_scale(scale: int) -> None:
    """scale must be an int >= 1."""
    if isinstance(scale, bool) or not isinstance(scale, Integral) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")


def write_png(path: PathLike, image: np.ndarray) -> None:
    """An RGB uint8 image (H, W, 3) as PNG (via PyAV's image support), written atomically."""
    image = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"write_png needs an (H, W, 3) uint8 image, got shape {image.shape}")
    with atomic_write(path) as tmp:
        av.VideoFrame.from_ndarray(image, format="rgb24").to_image().save(tmp, format="PNG")
