"""Output and input files: atomic writes, MP4 video."""

from context_forcing.io.files import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    commit_temp,
    discard_temp,
    reserve_temp,
)
from context_forcing.io.video import QUALITIES, VideoWriter, read_mp4, write_mp4

__all__ = [
    "QUALITIES",
    "VideoWriter",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable",
    "commit_temp",
    "discard_temp",
    "read_mp4",
    "reserve_temp",
    "write_mp4",
]
