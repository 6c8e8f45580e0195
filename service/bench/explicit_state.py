"""A stateful model for peers that keep no state (ONNX Runtime): the buffers forward() updates
in place become explicit inputs, and their new values explicit outputs, so the caller can feed
each call's new state into the next and the peer does the work of carrying it, as ours does.

Imports torch lazily: it runs in the peers' own process (peers.py) and in tests.
"""
from __future__ import annotations


def state_names(module, examples: tuple) -> list[str]:
    """The buffers forward() updates in place (the model's state), as torch.export sees them."""
    import torch
    # functionalized (run_decompositions): the in-place updates become the signature's mutations
    program = torch.export.export(module, tuple(examples), strict=False).run_decompositions({})
    return list(program.graph_signature.buffers_to_mutate.values())


def with_explicit_state(module, names: list[str]):
    """module as a function of (inputs..., state...) returning (outputs..., new state...): each
    state buffer is swapped for a copy of the given value (torch.func.functional_call), which
    forward()'s in-place updates then change and the wrapper returns."""
    import torch
    from torch.func import functional_call

    class ExplicitState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, *args):
            split = len(args) - len(names)
            state = [value.clone() for value in args[split:]]
            outputs = functional_call(self.inner, dict(zip(names, state)), tuple(args[:split]), strict=False)
            return (*(outputs if isinstance(outputs, tuple) else (outputs,)), *state)
    return ExplicitState().eval()


def starting_state(module, names: list[str]) -> list:
    """The state buffers' values now (before any call: their values at export, as ours starts)."""
    buffers = dict(module.named_buffers())
    return [buffers[name].detach().clone() for name in names]
