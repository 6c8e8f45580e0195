"""The audio op set: the operations audio and control models are built from, in one place.

Drawn from the zoo (MLPs, SIREN, 1-D convolutions and ResNets, RNNs, the log spectrum, the
transformer block, the VAE, the MDN-RNN), the streaming models makers write (cells stepped in a
loop, block-wise oscillators and envelopes) and published audio architectures (WaveNet/TCN's
dilated causal convolutions and gated activations, DDSP's harmonic oscillator bank with cumsum
phases and upsampled controls, RAVE/EnCodec's strided and transposed convolutions with
reflection padding and Snake activations, NAM's LSTMs and WaveNets, mel/STFT front ends).

Each entry is (a layer as source, or None; a function of the layer and the shared input `x`, a
[2, 4, 64] tensor - batch, channels, samples - returning one tensor). tests/test_audio_ops.py
puts every entry into one model (one export, one compile per target: fast), and checks each
entry's slice of the output against PyTorch on this computer and on emulated aarch64.
"""
from __future__ import annotations

import textwrap

INPUT_SHAPE = (2, 4, 64)
P = "(x.abs() + 0.1)"   # a positive input, for log, sqrt, pow

AUDIO_OPS: dict[str, tuple[str | None, str]] = {
    # recurrent cells and layers
    # (short sequences: every step is unrolled code, and this model must compile fast)
    "lstm": ("torch.nn.LSTM(4, 8, batch_first=True)", "lambda m, x: m(x[..., :8].transpose(1, 2))[0]"),
    "gru_two_layers": ("torch.nn.GRU(4, 8, num_layers=2)", "lambda m, x: m(x[..., :8].permute(2, 0, 1))[0]"),
    "rnn_tanh": ("torch.nn.RNN(4, 8, batch_first=True)", "lambda m, x: m(x[..., :8].transpose(1, 2))[1]"),
    "lstm_cell_loop": ("torch.nn.LSTMCell(4, 8)",
                       "lambda m, x: torch.stack([(s := m(x[..., t], s if t else None))[0] for t in range(6)])"),
    "gru_cell_loop": ("torch.nn.GRUCell(4, 8)",
                      "lambda m, x: torch.stack([(h := m(x[..., t], h if t else None)) for t in range(6)])"),
    "rnn_cell": ("torch.nn.RNNCell(4, 8)", "lambda m, x: m(x[..., 0])"),
    # convolutions
    "conv1d_dilated": ("torch.nn.Conv1d(4, 6, 3, dilation=4, padding=4)", "lambda m, x: m(x)"),
    "conv1d_causal": ("torch.nn.Conv1d(4, 6, 5)", "lambda m, x: m(torch.nn.functional.pad(x, (4, 0)))"),
    "conv1d_strided": ("torch.nn.Conv1d(4, 8, 4, stride=2)", "lambda m, x: m(x)"),
    "conv1d_depthwise": ("torch.nn.Conv1d(4, 4, 3, groups=4, padding=1)", "lambda m, x: m(x)"),
    "conv_transpose1d": ("torch.nn.ConvTranspose1d(4, 3, 4, stride=2, padding=1)", "lambda m, x: m(x)"),
    "conv2d": ("torch.nn.Conv2d(1, 3, 3, padding=1)", "lambda m, x: m(x[:, :1].reshape(2, 1, 8, 8))"),
    "conv_transpose2d": ("torch.nn.ConvTranspose2d(2, 2, 2, stride=2)", "lambda m, x: m(x[:, :2].reshape(2, 2, 8, 8))"),
    # padding modes
    "pad_constant": (None, "lambda m, x: torch.nn.functional.pad(x, (3, 2), value=0.5)"),
    "pad_reflect": (None, "lambda m, x: torch.nn.functional.pad(x, (3, 2), mode='reflect')"),
    "pad_replicate": (None, "lambda m, x: torch.nn.functional.pad(x, (3, 2), mode='replicate')"),
    "pad_circular": (None, "lambda m, x: torch.nn.functional.pad(x, (3, 2), mode='circular')"),
    # interpolation (control rate -> audio rate)
    "upsample_linear": (None, "lambda m, x: torch.nn.functional.interpolate(x[..., :16], scale_factor=4, mode='linear')"),
    "upsample_linear_align": (None, "lambda m, x: torch.nn.functional.interpolate(x, size=100, mode='linear', "
                                    "align_corners=True)"),
    "upsample_nearest": (None, "lambda m, x: torch.nn.functional.interpolate(x[..., :16], scale_factor=4)"),
    "upsample_bilinear": (None, "lambda m, x: torch.nn.functional.interpolate(x.reshape(2, 4, 8, 8), "
                                "scale_factor=2, mode='bilinear')"),
    # pooling
    "avg_pool1d": (None, "lambda m, x: torch.nn.functional.avg_pool1d(x, 4)"),
    "max_pool1d": (None, "lambda m, x: torch.nn.functional.max_pool1d(x, 3, stride=2, padding=1)"),
    "adaptive_avg_pool1d": (None, "lambda m, x: torch.nn.functional.adaptive_avg_pool1d(x, 10)"),
    "max_pool2d": (None, "lambda m, x: torch.nn.functional.max_pool2d(x.reshape(2, 4, 8, 8), 2)"),
    # scans (phase accumulation, envelopes, peak hold)
    "cumsum_phase": (None, "lambda m, x: torch.sin(2 * torch.pi * torch.cumsum(x.abs() * 0.01, -1))"),
    "cumprod_envelope": (None, "lambda m, x: torch.cumprod(1 - x.abs() * 0.01, -1)"),
    "cummax_peak_hold": (None, "lambda m, x: torch.cummax(x.abs(), -1)[0]"),
    # trigonometric and exponential math
    "sin_cos_tan": (None, "lambda m, x: torch.cat([torch.sin(x), torch.cos(x), torch.tan(x * 0.5)])"),
    "tanh_sinh_cosh": (None, "lambda m, x: torch.cat([torch.tanh(x), torch.sinh(x), torch.cosh(x)])"),
    "asin_acos_atan": (None, "lambda m, x: torch.cat([torch.asin(torch.tanh(x)), torch.acos(torch.tanh(x)), "
                             "torch.atan(x)])"),
    "atan2": (None, "lambda m, x: torch.atan2(x[:, :2], x[:, 2:])"),
    "exp_log": (None, f"lambda m, x: torch.cat([torch.exp(x), torch.log({P}), torch.log1p({P}), torch.expm1(x), "
                      f"torch.log10({P}), torch.exp2(x)])"),
    "sqrt_rsqrt_pow": (None, f"lambda m, x: torch.cat([torch.sqrt({P}), torch.rsqrt({P}), {P} ** 1.7, x ** 2])"),
    "mu_law": (None, "lambda m, x: torch.sign(x) * torch.log1p(255 * x.abs()) / torch.log1p(torch.tensor(255.0))"),
    "phase_wrap": (None, "lambda m, x: torch.cat([torch.remainder(x * 3, 1.0), torch.fmod(x * 3, 1.0), "
                         "torch.frac(x * 3), torch.floor(x * 3), torch.round(x * 3)])"),
    # spectra
    "rfft_power": (None, "lambda m, x: torch.view_as_real(torch.fft.rfft(x)).pow(2).sum(-1)"),
    "rfft_magnitude": (None, "lambda m, x: torch.fft.rfft(x, norm='ortho').abs()"),
    "irfft": (None, "lambda m, x: torch.fft.irfft(torch.fft.rfft(x) , n=64)"),
    "windowed_frames": (None, "lambda m, x: x.unfold(-1, 16, 8) * torch.hann_window(16)"),
    # norms
    "layer_norm": ("torch.nn.LayerNorm(64)", "lambda m, x: m(x)"),
    "group_norm": ("torch.nn.GroupNorm(2, 4)", "lambda m, x: m(x)"),
    "batch_norm": ("torch.nn.BatchNorm1d(4)", "lambda m, x: m(x)"),
    "instance_norm": ("torch.nn.InstanceNorm1d(4, affine=True)", "lambda m, x: m(x)"),
    "rms_norm": ("torch.nn.RMSNorm(64)", "lambda m, x: m(x)"),
    "normalize": (None, "lambda m, x: torch.nn.functional.normalize(x, dim=-1)"),
    # activations
    "relu_family": (None, "lambda m, x: torch.cat([torch.relu(x), torch.nn.functional.leaky_relu(x, 0.2), "
                          "torch.nn.functional.elu(x), torch.nn.functional.selu(x), torch.nn.functional.relu6(x * 4)])"),
    "smooth_activations": (None, "lambda m, x: torch.cat([torch.nn.functional.gelu(x), "
                                 "torch.nn.functional.gelu(x, approximate='tanh'), torch.nn.functional.silu(x), "
                                 "torch.nn.functional.softplus(x), torch.nn.functional.mish(x), torch.sigmoid(x)])"),
    "hard_activations": (None, "lambda m, x: torch.cat([torch.nn.functional.hardtanh(x), "
                               "torch.nn.functional.hardsigmoid(x), torch.nn.functional.hardswish(x), "
                               "torch.nn.functional.softsign(x)])"),
    "prelu": ("torch.nn.PReLU(4)", "lambda m, x: m(x)"),
    "glu_gated": (None, "lambda m, x: torch.cat([torch.nn.functional.glu(x, dim=1), "
                        "torch.tanh(x[:, :2]) * torch.sigmoid(x[:, 2:])])"),
    "snake": (None, "lambda m, x: x + torch.sin(0.7 * x) ** 2 / 0.7"),
    # softmax
    "softmax": (None, "lambda m, x: torch.cat([torch.softmax(x, -1), torch.log_softmax(x, 1)])"),
    # where, clamp and friends
    "where_clamp": (None, "lambda m, x: torch.cat([torch.where(x > 0, x, 0.1 * x), x.clamp(-0.5, 0.5), "
                          "x.clamp_min(0), torch.minimum(x, x.flip(-1)), torch.maximum(x, 0.2 * x)])"),
    "sign_abs": (None, "lambda m, x: torch.cat([torch.sign(x), x.abs(), torch.copysign(x.abs(), x.flip(-1))])"),
    # gather and index ops
    "gather": (None, "lambda m, x: torch.gather(x, -1, (torch.arange(64) * 7 % 64).expand(2, 4, 64))"),
    "index_select": (None, "lambda m, x: x.index_select(-1, torch.tensor([0, 5, 9, 63]))"),
    "advanced_index": (None, "lambda m, x: x[:, torch.tensor([3, 1]), 10:20]"),
    "flip_roll_narrow": (None, "lambda m, x: torch.cat([x.flip(-1), x.roll(5, -1), x.narrow(-1, 3, 64 - 3)"
                               ".roll(1, 1).repeat(1, 1, 2)[..., :64]])"),
    "take_along_dim": (None, "lambda m, x: torch.take_along_dim(x, x.argsort(-1), -1)"),
    "lookup_table": ("torch.nn.Embedding(16, 4)", "lambda m, x: m((x.abs() * 4).long().clamp(0, 15))"),
    # reductions
    "sum_mean": (None, "lambda m, x: torch.cat([x.sum(-1).reshape(-1), x.mean(1).reshape(-1), x.sum()[None]])"),
    "max_min": (None, "lambda m, x: torch.cat([x.amax(-1).reshape(-1), x.amin(1).reshape(-1), "
                      "x.max(-1)[0].reshape(-1), x.argmax(-1).float().reshape(-1)])"),
    "var_std": (None, "lambda m, x: torch.cat([x.var(-1).reshape(-1), x.std(-1, unbiased=False).reshape(-1), "
                      "x.var(1).reshape(-1)])"),
    "norms": (None, "lambda m, x: torch.cat([x.norm(dim=-1), torch.linalg.vector_norm(x, 1, dim=-1)])"),
    "logsumexp_prod": (None, "lambda m, x: torch.cat([torch.logsumexp(x, -1), (1 + 0.01 * x).prod(-1)])"),
    # linear algebra
    "linear": ("torch.nn.Linear(64, 16)", "lambda m, x: m(x)"),
    "matmul_bmm_einsum": (None, "lambda m, x: torch.cat([(x @ x.transpose(1, 2)).reshape(-1), "
                                "torch.bmm(x, x.transpose(1, 2)).reshape(-1), "
                                "torch.einsum('bct,bdt->bcd', x, x).reshape(-1)])"),
    "attention": ("torch.nn.MultiheadAttention(4, 2, batch_first=True)",
                  "lambda m, x: m(x.transpose(1, 2), x.transpose(1, 2), x.transpose(1, 2))[0]"),
}


def model_source() -> str:
    """A model file computing every entry of AUDIO_OPS from one input, each flattened, concatenated
    in AUDIO_OPS' order; `SIZES` (entry -> number of values) says where each one's slice is."""
    layers = "\n".join(f"        self.layers[{name!r}] = {layer}" for name, (layer, _) in AUDIO_OPS.items() if layer)
    functions = "\n".join(f"    {name!r}: {function}," for name, (_, function) in AUDIO_OPS.items())
    source = f"""\
import torch

FUNCTIONS = {{
{functions}
}}


class AudioOps(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleDict()
{layers}

    def outputs(self, x):
        return {{name: f(self.layers[name] if name in self.layers else None, x).reshape(-1).float()
                for name, f in FUNCTIONS.items()}}

    def forward(self, x):
        return torch.cat(list(self.outputs(x).values()))


def model():
    torch.manual_seed(0)
    module = AudioOps()
    module.layers['batch_norm'].running_mean.uniform_(-0.5, 0.5)   # eval statistics that are not 0 and 1
    module.layers['batch_norm'].running_var.uniform_(0.5, 2.0)
    return module


def example_input():
    torch.manual_seed(1)
    return torch.randn{INPUT_SHAPE}
"""
    return textwrap.dedent(source)
