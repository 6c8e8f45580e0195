"""Multiply-adds per call of a model file, counted on the PyTorch model as written.

torch's FlopCounterMode counts the matrix products and convolutions PyTorch dispatches, with the
attention fast path turned off (its fused kernel hides them). Recurrent layers whose fused kernel
hides its products (LSTM, GRU on CPU) are counted from their shapes: per step, gates x hidden x
(input + hidden) multiply-adds per layer.
"""
from __future__ import annotations

from pathlib import Path

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def count_macs(model_file: Path) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from service.modelfile import load_model

    loaded = load_model(model_file)
    inputs = loaded.example_input if isinstance(loaded.example_input, tuple) else (loaded.example_input,)
    counter = FlopCounterMode(display=False)
    hidden_macs = []

    def recurrent_hooks(module: torch.nn.Module):
        seen = {}

        def before(mod, args):
            seen["flops"] = counter.get_total_flops()

        def after(mod, args, output):
            if counter.get_total_flops() > seen["flops"]:
                return           # its products were dispatched, and counted
            x = args[0]
            steps = x.shape[0 if not mod.batch_first else 1] if x.dim() == 3 else x.shape[0]
            batch = x.shape[1 if not mod.batch_first else 0] if x.dim() == 3 else 1
            size = mod.input_size
            for _ in range(mod.num_layers):
                hidden_macs.append(steps * batch * GATES[type(mod).__name__] * mod.hidden_size * (size + mod.hidden_size))
                size = mod.hidden_size
        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    for module in loaded.module.modules():
        if type(module).__name__ in GATES:
            recurrent_hooks(module)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with counter, torch.no_grad():
            loaded.module(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() // 2 + sum(hidden_macs)
