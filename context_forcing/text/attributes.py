"""A tiny prompt encoder for procedural worlds: discrete attribute tokens -> learned embeddings."""

from __future__ import annotations

from torch import Tensor, nn

from context_forcing.conditioning import NULL_TOKEN
from context_forcing.config import TextConfig


class AttributeEncoder(nn.Module):
    """Token ids (B, P) -> embeddings (B, P, text_dim); the null token embeds to zeros.

    Zero embeddings for the null prompt mirror umT5 usage in Wan, where padding embeddings are zeroed,
    so the unconditional branch of guidance means the same thing for both encoders.
    """

    def __init__(self, cfg: TextConfig, text_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, text_dim, padding_idx=NULL_TOKEN)
        nn.init.normal_(self.embedding.weight, std=1.0)
        self.embedding.weight.data[NULL_TOKEN].zero_()
        self.vocab_size = cfg.vocab_size

    def forward(self, prompt: Tensor) -> Tensor:
        if prompt.numel() and (prompt.min() < 0 or prompt.max() >= self.vocab_size):
            raise ValueError(f"prompt token ids must lie in [0, {self.vocab_size}), got "
                             f"[{int(prompt.min())}, {int(prompt.max())}]")
        return self.embedding(prompt)
