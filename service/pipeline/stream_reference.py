"""The streaming reference of a stateful model: K consecutive blocks and PyTorch's outputs for them.

A stateful model's output depends on every block before it, so one call proves little. At export
we feed a copy of the PyTorch module (its buffers at their starting values) STREAM_BLOCKS blocks
in turn, its state carried as the glue carries it, and keep the blocks and outputs in
stream.npz; `bench` feeds the compiled module the same blocks in one context and compares.

stream.npz: `input0`, `input1`, ... each (K, *shape) in call order (the model's inputs, then
its noise inputs), and `expected` (K, *output shape).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # torch is imported where the export runs, never by bench's import of STREAM_FILE
    import torch

STREAM_FILE = "stream.npz"
STREAM_BLOCKS = 8
STREAM_SEED = 4321


def stream_blocks(example: "torch.Tensor", blocks: int = STREAM_BLOCKS) -> list["torch.Tensor"]:
    """The example input first (the single-call reference's block), then seeded blocks spanning the
    example's range, so the state meets inputs like the ones the model was written for."""
    import torch

    low, high = float(example.min()), float(example.max())
    if high - low < 1e-6:
        low, high = low - 1.0, high + 1.0
    generator = torch.Generator().manual_seed(STREAM_SEED)
    return [example] + [low + (high - low) * torch.rand(example.shape, generator=generator)
                        for _ in range(blocks - 1)]


def write_stream_reference(module: "torch.nn.Module", examples: tuple, noise: list, noise_seed: int,
                           out_dir: Path, blocks: int = STREAM_BLOCKS) -> None:
    """Feeds a copy of module (state at its start) `blocks` blocks of each input in turn; block k's
    noise inputs are PyTorch's draws after torch.manual_seed(noise_seed + k), as the compiled module
    gets them. Several outputs are flattened and joined, as in expected.npy."""
    import torch

    from . import rewrites, routing

    stream = copy.deepcopy(module)
    inputs = [stream_blocks(example, blocks) for example in examples]
    outputs, noise_blocks = [], []
    with torch.no_grad(), torch.random.fork_rng():
        for index in range(blocks):
            torch.manual_seed(noise_seed + index)
            returned = stream(*[per_input[index] for per_input in inputs])
            outputs.append(routing.joined(routing.output_tensors(returned, Path("model.py"))).numpy())
            noise_blocks.append([n.numpy() for n in rewrites.draw_noise(noise, noise_seed + index)])
    arrays = {f"input{i}": np.stack([b.numpy() for b in per_input]) for i, per_input in enumerate(inputs)}
    for index in range(len(noise)):
        arrays[f"input{len(inputs) + index}"] = np.stack([drawn[index] for drawn in noise_blocks])
    np.savez(out_dir / STREAM_FILE, expected=np.stack(outputs), **arrays)
