"""Wan2.1 end to end: checkpoint loading, the Wan VAE codec with streaming decode, umT5 prompts, the
text-to-video pipeline, the resource estimator and training-data preparation (docs/WAN.md).

Submodules import diffusers / transformers lazily, so `import context_forcing.wan` stays cheap.
"""
