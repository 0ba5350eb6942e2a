"""Paper-scale training data: a folder of videos + captions -> Wan latents and umT5 embeddings on disk.

Input: `<name>.mp4` (or .mov / .mkv / .webm) each with a caption `<name>.txt`. Each video is resampled to
16 fps by timestamp (the first frame at or after k / 16 s), centre-cropped to the target aspect, resized
(bilinear, antialiased) and cut to `1 + 4 (F - 1)` frames for F latent frames; the Wan VAE encodes it
(streaming, normalised latents) and umT5 embeds its caption. Output folder:

    latents/<name>.safetensors   {"latents": (F, 16, H/8, W/8)}
    prompts/<hash>.safetensors   {"prompt_embeds": (512, 4096)}  (the UMT5PromptEncoder cache)
    index.jsonl                  one line per prepared clip: name, latents file, caption, prompt key, frames
    skipped.jsonl                videos that could not be used, with the reason

Resumable: every file is written atomically, a clip whose latents exist is not encoded again, and the index
is rewritten (atomically) after every clip. `PreparedLatents` reads the folder for the training stages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from context_forcing.io.files import atomic_write, atomic_write_text

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
FPS = 16  # Wan2.1's frame rate: 4 pixel frames per latent, 4 latents per second


@dataclass(frozen=True)
class PrepareRequest:
    videos: Path
    out: Path
    latent_frames: int  # F: the clip is 1 + 4 (F - 1) pixel frames
    height: int
    width: int
    latent_dtype: torch.dtype = torch.bfloat16


def find_clips(videos: Path) -> list[tuple[Path, Path | None]]:
    """(video, caption or None) pairs in name order."""
    if not videos.is_dir():
        raise FileNotFoundError(f"video folder {videos} does not exist")
    clips = sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    return [(p, p.with_suffix(".txt") if p.with_suffix(".txt").is_file() else None) for p in clips]


def read_frames(path: Path, count: int, fps: int = FPS) -> Tensor:
    """Up to `count` RGB frames (T, H, W, 3) uint8 sampled at `fps` by timestamp; decoding stops early."""
    import av  # noqa: PLC0415

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if len(frames) == count:
                break
            t = frame.time if frame.time is not None else 0.0
            if t + 1e-6 >= len(frames) / fps:  # the first frame at or after the next 1/fps tick
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
    if not frames:
        return torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    return torch.stack(frames)


def fit_frames(frames: Tensor, height: int, width: int) -> Tensor:
    """Centre-crop (T, H, W, 3) uint8 to the target aspect, then resize to (T, height, width, 3) uint8."""
    _, h, w, _ = frames.shape
    if h * width > w * height:  # too tall: crop rows
        crop = round(w * height / width)
        frames = frames[:, (h - crop) // 2 : (h - crop) // 2 + crop]
    else:
        crop = round(h * width / height)
        frames = frames[:, :, (w - crop) // 2 : (w - crop) // 2 + crop]
    x = frames.permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def prepare_dataset(request: PrepareRequest, codec, text_encoder, progress: bool = True) -> dict:
    """Encode every usable clip (skipping those already done); returns counts. `text_encoder.cache_dir`
    must be `request.out / 'prompts'` so embeddings land beside the latents."""
    from safetensors.torch import save_file  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    if text_encoder.cache_dir is None or Path(text_encoder.cache_dir) != request.out / "prompts":
        raise ValueError(
            f"text_encoder.cache_dir must be {request.out / 'prompts'}, got {text_encoder.cache_dir}"
        )
    pixel_frames = 1 + 4 * (request.latent_frames - 1)
    index, skipped = [], []
    clips = find_clips(request.videos)
    for video, caption in tqdm(clips, desc="prepare", unit="clip", disable=not progress):
        name = video.stem
        target = request.out / "latents" / f"{name}.safetensors"
        if caption is None:
            skipped.append(
                {"video": video.name, "reason": f"no caption file {video.with_suffix('.txt').name}"}
            )
            continue
        prompt = caption.read_text(encoding="utf-8").strip()
        if not target.is_file():
            frames = read_frames(video, pixel_frames)
            if frames.shape[0] < pixel_frames:
                skipped.append(
                    {
                        "video": video.name,
                        "reason": f"{frames.shape[0]} frames at {FPS} fps, {pixel_frames} needed",
                    }
                )
                continue
            latents = codec.encode(fit_frames(frames, request.height, request.width)[None])[0]  # (F, C, h, w)
            with atomic_write(target) as temp:
                save_file({"latents": latents.to(request.latent_dtype).contiguous()}, str(temp))
        text_encoder.encode([prompt])  # computed once, cached in prompts/
        index.append(
            {
                "name": name,
                "latents": f"latents/{name}.safetensors",
                "prompt": prompt,
                "prompt_key": text_encoder.cache_key(prompt),
                "frames": request.latent_frames,
            }
        )
        _write_jsonl(request.out / "index.jsonl", index)
    _write_jsonl(request.out / "index.jsonl", index)
    _write_jsonl(request.out / "skipped.jsonl", skipped)
    return {"prepared": len(index), "skipped": len(skipped), "videos": len(clips)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


class PreparedLatents:
    """The training stages' data contract (`training.data.TrainingData`) over a prepared folder.

    Each step draws `batch` clips (per process: its slice of the global batch) with a generator seeded by
    (seed, step), so a resumed run continues the same sequence; clips start at their first latent frame.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        batch: int,
        seed: int = 0,
        latent_shape: tuple[int, ...] | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.folder = Path(folder)
        index = self.folder / "index.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"{index} does not exist: run `context-forcing prepare-wan-data` first")
        self.entries = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        if not self.entries:
            raise ValueError(f"{index} lists no clips")
        if batch < 1 or not 0 <= rank < world:
            raise ValueError(
                f"batch={batch}, rank={rank}, world={world}: need batch >= 1 and 0 <= rank < world"
            )
        self.batch, self.seed, self.rank, self.world = batch, seed, rank, world
        self.latent_shape = latent_shape  # (C, h, w) the run expects, checked on read
        self.step = 0

    def _read(self, entry: dict, frames: int) -> tuple[Tensor, Tensor]:
        from safetensors.torch import load_file  # noqa: PLC0415

        latents = load_file(str(self.folder / entry["latents"]))["latents"]
        if latents.shape[0] < frames:
            raise ValueError(
                f"{entry['latents']} has {latents.shape[0]} latent frames; the stage asks for "
                f"{frames} (prepare longer clips with --seconds)"
            )
        if self.latent_shape is not None and tuple(latents.shape[1:]) != tuple(self.latent_shape):
            raise ValueError(
                f"{entry['latents']} has latent frames {tuple(latents.shape[1:])}; the run expects "
                f"{tuple(self.latent_shape)} (prepare at the run's height and width)"
            )
        embeds = load_file(str(self.folder / "prompts" / f"{entry['prompt_key']}.safetensors"))[
            "prompt_embeds"
        ]
        return latents[:frames].float(), embeds.float()

    def next_clip(self, frames: int):
        from context_forcing.conditioning import Conditioning  # noqa: PLC0415

        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        picks = torch.randint(len(self.entries), (self.batch * self.world,), generator=g).tolist()
        local = picks[self.rank * self.batch : (self.rank + 1) * self.batch]
        self.step += 1
        latents, embeds = zip(*(self._read(self.entries[i], frames) for i in local))
        return torch.stack(latents), Conditioning(prompt_embeds=torch.stack(embeds))

    def next_conditioning(self, frames: int):
        return self.next_clip(frames)[1]

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
