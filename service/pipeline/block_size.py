"""A model exported at another block size than the one its example_input has.

A block-flexible model (recurrent, convolutional over time, per-sample) accepts its block at any
length: its first input's last dimension is time, and it runs and returns outputs that follow it
at another length. `at_block` finds that out in PyTorch, on the example input resized along time,
before anything is exported; a model that takes only its own block (a Linear over the block, a
reshape to a fixed size) raises FixedBlockError (stage "block") saying why, at its model.py line.
Runs in the export process (torch imported).
"""
from __future__ import annotations

import copy
import dataclasses

from ..errors import ExportError
from ..modelfile import LoadedModel, _error_at_user_line


HINT = ("to run it at its own block, set `block = 0` in bela-iree.toml; to let it take any block, "
        "size it from the input (x.shape[-1]), not from BLOCK_SIZE")


class FixedBlockError(ExportError):
    """The model takes only the block its example_input has."""
    stage = "block"

    def __init__(self, message: str, **where):
        super().__init__(message, hint=HINT, **where)


def resized(example, block: int):
    """example along its last dimension (time) at `block` frames: repeated, then cut."""
    frames = example.shape[-1]
    repeats = -(-block // frames)
    return example.repeat(*([1] * (example.dim() - 1)), repeats)[..., :block].contiguous()


def at_block(loaded: LoadedModel, block: int) -> LoadedModel:
    """loaded with its first input `block` frames long, if the model accepts that."""
    if block == loaded.block_size:
        return loaded
    example = loaded.example_input
    own = loaded.block_size
    if example.dim() == 0 or example.shape[-1] != own:
        raise FixedBlockError(f"the model's first input {list(example.shape)} does not end in its block "
                              f"({own} frames), so it has no time dimension to resize", file=str(loaded.path))
    examples = (resized(example, block), *loaded.example_inputs[1:])
    before = _outputs(loaded, loaded.example_inputs, own)
    after = _outputs(loaded, examples, block)
    for index, (old, new) in enumerate(zip(before, after)):
        expected = list(old.shape[:-1]) + [block] if old.dim() and old.shape[-1] == own else list(old.shape)
        if list(new.shape) != expected:
            raise FixedBlockError(f"the model takes only {own}-frame blocks: at {block} frames its output {index} "
                                  f"is {list(new.shape)}, not {expected}", file=str(loaded.path))
    return dataclasses.replace(loaded, example_input=examples[0], example_inputs=examples, block_size=block)


def _outputs(loaded: LoadedModel, examples: tuple, block: int) -> list:
    import torch
    try:
        with torch.no_grad(), torch.random.fork_rng():
            returned = copy.deepcopy(loaded.module)(*examples)   # a copy: state buffers keep their values
    except Exception as e:
        where = _error_at_user_line(e, loaded.path, "")
        raise FixedBlockError(f"the model takes only {loaded.block_size}-frame blocks: at {block} frames it raises "
                              f"{type(e).__name__}: {e}", file=where.file, line=where.line) from None
    return list(returned) if isinstance(returned, (tuple, list)) else [returned]
