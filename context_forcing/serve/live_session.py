"""One person's live session: a PanWorld episode's world, a camera moved chunk by chunk, prompt switches, and
what the page shows after every chunk (the new frames, and which past frames sit in sink / slow / fast).

Synchronous model work, run by the server in a worker thread. Its state is O(1) in the video's length: the
streaming session's own (bounded) state, the camera, and the prompt.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from context_forcing.codecs import Codec
from context_forcing.conditioning import Conditioning
from context_forcing.config import RunConfig
from context_forcing.data.episodes import episode_conditioning, ground_truth_pixels, panworld_episodes
from context_forcing.data.panworld import PanWorldConfig
from context_forcing.memory.layout import MemoryLayout
from context_forcing.model.dit import CausalVideoDiT
from context_forcing.rollout.live import LiveCamera, prompt_ids, prompt_values
from context_forcing.rollout.session import StreamingSession


def png_data_url(frame: np.ndarray) -> str:
    """An RGB uint8 frame (H, W, 3) as a PNG data URL (the page scales it up, pixelated)."""
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class LiveSession:
    """A batch-1 `StreamingSession` on PanWorld episode `seed`, steered live; the opening may be prefilled
    with the episode's ground truth (whole chunks)."""

    def __init__(
        self,
        model: CausalVideoDiT,
        run: RunConfig,
        codec: Codec,
        layout: MemoryLayout,
        seed: int,
        prefill_seconds: float = 0.0,
        world: PanWorldConfig | None = None,
    ) -> None:
        self.run, self.world = run, world or PanWorldConfig()
        self.prefill_frames = (
            int(prefill_seconds * run.video.latent_frames_per_second + 1e-9) // run.chunk * run.chunk
        )
        self.episode = panworld_episodes(run, seed, 1, max(self.prefill_frames, 1), self.world)[0]
        prompt = torch.from_numpy(self.episode.prompt_ids())
        ids = torch.zeros(1, run.text.prompt_len, dtype=torch.long)
        ids[0, : len(prompt)] = prompt
        cond = (
            episode_conditioning(run, [self.episode], self.prefill_frames)
            if self.prefill_frames
            else Conditioning(prompt=ids)
        )  # live chunks bring their own per-frame conditioning
        self.session = StreamingSession(model, run, cond, seed=seed, layout=layout, codec=codec)
        start_x = int(self.episode.camera_x[self.prefill_frames - 1 if self.prefill_frames else 0])
        self.camera = LiveCamera(run, self.episode, start_x)
        self.prompt = prompt_values(self.world, ids[0])
        self.last_switch: dict[str, Any] | None = None
        self.decoder = codec.stream_decoder()  # generated chunks, decoded in order

    def opening(self) -> dict[str, Any]:
        """Commit the ground-truth opening (if any) and describe the state:
        the first message after `start`."""
        frames: list[dict[str, Any]] = []
        if self.prefill_frames:
            pixels = ground_truth_pixels(self.run, self.episode, 0, self.prefill_frames)  # (F, h, w, 3)
            self.session.prefill_frames(pixels[None])
            frames = [{"index": i, "png": png_data_url(p.numpy())} for i, p in enumerate(pixels)]
        return self._update("opening", frames, 0.0)

    def switch_prompt(self, values: dict[str, int], policy: str) -> None:
        """Switch to prompt attribute values with a memory policy (applied before the next chunk)."""
        tic = time.perf_counter()
        self.session.switch_prompt(prompt_ids(self.world, values, self.run.text.prompt_len), policy=policy)
        self.prompt = dict(values)
        self.last_switch = {
            "policy": policy,
            "at_frame": self.session.frames_done,
            "prompt": dict(values),
            "ms": round(1000 * (time.perf_counter() - tic), 1),
        }

    def step(self, move: int) -> dict[str, Any]:
        """Generate the next chunk with the camera moving `move` per frame; the page's update."""
        tic = time.perf_counter()
        start = self.session.frames_done
        latents, _ = self.session.generate_chunk(frames_cond=self.camera.chunk_conditioning(move))
        pixels = self.decoder.decode(latents.cpu())[0]  # (c, h, w, 3) uint8
        frames = [{"index": start + i, "png": png_data_url(p.numpy())} for i, p in enumerate(pixels)]
        return self._update("chunk", frames, 1000 * (time.perf_counter() - tic), move)

    def _update(self, kind: str, frames: list[dict[str, Any]], ms: float, move: int = 0) -> dict[str, Any]:
        """The page's view after a chunk: new frames, memory parts (with the next chunk's positions),
        decisions."""
        memory = self.session.memory
        table, plan = memory.tables[0], memory.plan()[0]
        positions = dict(zip(plan.frames, plan.positions))
        stats = memory.stats
        update = {
            "type": kind,
            "frames": frames,
            "frames_done": self.session.frames_done,
            "seconds": self.session.frames_done / self.run.video.latent_frames_per_second,
            "memory": {
                part: [{"frame": f, "position": positions.get(f)} for f in getattr(table, part)]
                for part in ("sink", "slow", "fast")
            },
            "budget": self.session.layout.budget,
            "layout": self.session.layout.name,
            "events": [
                {"candidate": list(e.candidate), "admitted": e.admitted} for e in self.session.last_events
            ],
            "admissions": stats.admissions,
            "candidates": stats.candidates,
            "camera_x": self.camera.x,
            "move": move,
            "prompt": self.prompt,
            "switch": self.last_switch,
            "chunk_ms": round(ms, 1),
        }
        self.last_switch = None
        return update
