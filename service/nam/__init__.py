"""Neural Amp Modeler captures (`.nam`) as bela-iree models.

`read_capture` parses and validates a capture (capture.py); `streaming_capture` builds the
streaming module a model file hands to the pipeline (streaming.py); model_file.py writes the
model.py that loads a capture (`new --model capture.nam`, and MODEL given as a `.nam`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .capture import DEFAULT_BLOCK_SIZE, DEFAULT_SAMPLE_RATE, Capture, CaptureError, read_capture


@dataclass
class StreamingCapture:
    """What a model file needs: the module, an example block, the block size and sample rate."""
    model: object            # torch.nn.Module: (1, BLOCK_SIZE) -> (1, BLOCK_SIZE)
    example_input: object    # torch.Tensor (1, BLOCK_SIZE)
    block_size: int
    sample_rate: int
    capture: Capture


def streaming_capture(path: Path, block_size: int = DEFAULT_BLOCK_SIZE) -> StreamingCapture:
    import torch

    from .streaming import CaptureModule
    capture = read_capture(Path(path))
    module = CaptureModule(capture).eval()
    t = torch.arange(block_size, dtype=torch.float32) / capture.sample_rate
    example = (0.5 * torch.sin(2 * math.pi * 220.0 * t)).unsqueeze(0)   # a guitar-like test block
    return StreamingCapture(module, example, block_size, capture.sample_rate, capture)


def project_block_size(folder: Path) -> int:
    from .model_file import project_block_size as read
    return read(folder)


__all__ = ["Capture", "CaptureError", "DEFAULT_BLOCK_SIZE", "DEFAULT_SAMPLE_RATE", "StreamingCapture",
           "project_block_size", "read_capture", "streaming_capture"]
