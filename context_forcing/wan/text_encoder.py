"""umT5 prompt embeddings as Wan2.1 computes them, cached on disk by prompt hash.

Wan's convention (reference/wan_path.md section 3.4): clean the text (ftfy, HTML unescape twice, collapse
whitespace), tokenize padded and truncated to 512 tokens (`</s>` counted), encode with the attention mask,
then zero every row past the prompt's real length. The DiT attends to all 512 rows without a mask and
zero rows become bias vectors after its text MLP, so the padded length changes the video: `WAN_TEXT_LEN`
is a compatibility constant, not a tunable default.

The encoder (umT5-XXL: 5.7 B parameters, 11.4 GB in bf16) runs on the CPU unless told otherwise and is
only loaded when a prompt misses the cache.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from pathlib import Path

import torch
from torch import Tensor

from context_forcing.io.files import atomic_write

WAN_TEXT_LEN = 512
EXTRA = "pip install 'context-forcing[wan]'"


def require(module: str):
    """Import an optional dependency of the Wan path, or raise ImportError naming the extra that brings it."""
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"the Wan path needs {module!r}, which is not installed ({error}); install the "
            f"optional dependencies: {EXTRA}"
        ) from None


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning: ftfy, HTML unescape (twice), whitespace collapsed and stripped."""
    text = require("ftfy").fix_text(text)
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


class UMT5PromptEncoder:
    """Prompts -> (B, 512, D) float32 embeddings, zero past each prompt's length; optionally cached on disk.

    root: a Wan2.1 diffusers folder (with `text_encoder/` and `tokenizer/`), or give both folders explicitly.
    """

    def __init__(
        self,
        text_encoder: str | os.PathLike,
        tokenizer: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.text_encoder_dir, self.tokenizer_dir = Path(text_encoder), Path(tokenizer)
        for name, folder in (("text_encoder", self.text_encoder_dir), ("tokenizer", self.tokenizer_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(f"{name} folder {folder} does not exist")
        if not (self.text_encoder_dir / "config.json").is_file():
            raise FileNotFoundError(f"no config.json in {self.text_encoder_dir} (a UMT5EncoderModel folder)")
        if torch.device(device).type == "cpu" and dtype == torch.float16:
            raise ValueError("dtype float16 on CPU: use float32 or bfloat16 (fp16 matmuls crawl on CPU)")
        self.device, self.dtype = torch.device(device), dtype
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.fingerprint = self._fingerprint()
        self._model = None
        self._tokenizer = None
        self.encoder_calls = 0  # prompts actually run through umT5 (cache misses)

    @classmethod
    def from_pretrained(cls, root: str | os.PathLike, **kwargs) -> UMT5PromptEncoder:
        root = Path(root)
        return cls(root / "text_encoder", root / "tokenizer", **kwargs)

    def _fingerprint(self) -> str:
        """Identifies the encoder: its config and weight file names and sizes, plus dtype and text length."""
        files = sorted((p.name, p.stat().st_size) for p in self.text_encoder_dir.iterdir() if p.is_file())
        blob = json.dumps(
            {
                "config": (self.text_encoder_dir / "config.json").read_text(),
                "files": files,
                "dtype": str(self.dtype),
                "text_len": WAN_TEXT_LEN,
            }
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cache_key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.fingerprint}\n{clean_prompt(prompt)}".encode()).hexdigest()

    def load(self) -> None:
        """Load tokenizer and encoder (lazily called on the first cache miss)."""
        if self._model is not None:
            return
        transformers = require("transformers")
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(self.tokenizer_dir), local_files_only=True
        )
        model = transformers.UMT5EncoderModel.from_pretrained(
            str(self.text_encoder_dir), local_files_only=True, dtype=self.dtype
        )
        self._model = model.to(self.device).eval()

    def offload(self) -> None:
        """Free the encoder (prompts stay cached on disk); it reloads on the next cache miss."""
        self._model = None
        self._tokenizer = None

    def encode(self, prompts: list[str]) -> Tensor:
        """(B, 512, D) float32 on the CPU, one row per token, zero past each prompt's length."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        out: list[Tensor | None] = [self._read_cache(p) for p in prompts]
        missing = [i for i, e in enumerate(out) if e is None]
        if missing:
            fresh = self._run([prompts[i] for i in missing])
            for i, embedding in zip(missing, fresh):
                out[i] = embedding
                self._write_cache(prompts[i], embedding)
        return torch.stack(out)

    @torch.no_grad()
    def _run(self, prompts: list[str]) -> Tensor:
        self.load()
        tokens = self._tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            max_length=WAN_TEXT_LEN,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        mask = tokens.attention_mask.to(self.device)
        hidden = self._model(
            input_ids=tokens.input_ids.to(self.device), attention_mask=mask
        ).last_hidden_state
        self.encoder_calls += len(prompts)
        return (hidden.float() * mask[..., None]).cpu()  # zero the padding rows, as Wan does

    def _cache_path(self, prompt: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{self.cache_key(prompt)}.safetensors"

    def _read_cache(self, prompt: str) -> Tensor | None:
        path = self._cache_path(prompt)
        if path is None or not path.is_file():
            return None
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(str(path))["prompt_embeds"]

    def _write_cache(self, prompt: str, embedding: Tensor) -> None:
        path = self._cache_path(prompt)
        if path is None:
            return
        from safetensors.torch import save_file  # noqa: PLC0415

        with atomic_write(path) as temp:
            save_file(
                {"prompt_embeds": embedding.contiguous()},
                str(temp),
                metadata={"prompt": clean_prompt(prompt), "encoder": self.fingerprint},
            )
