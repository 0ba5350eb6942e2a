"""Context Forcing: long, consistent autoregressive video diffusion with Slow-Fast Memory."""

__version__ = "0.1.0"
