"""fft.py: rfft as a four-step DFT or a scaled input, complex abs from its parts, every other FFT as
DFT matmuls, fftshift as slices; complex_parts.py: complex outputs as real pairs, conj, polar, angle,
add and scaling."""
import torch

from service.pipeline import rewrites

from .cases import case_tests

# one compile for the complex FFTs (irfft too: also in tests/test_audio_ops.py) and the complex ops
# around them, returning complex values
COMPLEX_OPS = ("lambda m, x: (z := torch.fft.fft2(x) * 0.5 + torch.fft.ifftn(torch.fft.fft(x, dim=0), norm='ortho').conj())"
               " - torch.polar((torch.fft.irfftn(torch.fft.rfft2(x), s=(4, 8)) + torch.fft.hfft(torch.fft.ihfft(x), n=8)"
               " + torch.fft.irfft(torch.fft.rfft(x, dim=0), n=4, dim=0, norm='ortho') + z.angle()"
               " + torch.fft.fftshift(x).angle()).abs(), torch.fft.ifftshift(x, dim=1)[:1])"
               " + torch.fft.rfftn(x, s=(4, 14), norm='forward')")

CASES = {
    "rfft_forward_norm": ("torch.nn.Identity()", "lambda m, x: torch.view_as_real(torch.fft.rfft(x, norm='forward'))",
                          "torch.randn(1, 48)"),    # not a power of two: IREE's own FFT of the scaled input
    "rfft_four_step": ("torch.nn.Identity()", "lambda m, x: torch.log(torch.fft.rfft(x, norm='ortho').abs() ** 2 + 1e-7)",
                       "torch.randn(2, 3, 512)"),
    "complex_abs": ("torch.nn.Identity()", "lambda m, x: torch.fft.rfft(x).abs()", "torch.randn(1, 64)"),
    "complex_ffts_and_ops": ("torch.nn.Identity()", COMPLEX_OPS, "torch.randn(4, 8)"),
}


test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)


def test_rfft_four_step_only_for_power_of_two_lengths():
    cases = {(1, 1024): True, (3, 64): True, (1, 32): False, (1, 48): False}
    for shape, four_step in cases.items():
        x = torch.randn(*shape)
        program = torch.export.export(Lambda(lambda x: torch.fft.rfft(x).abs()), (x,))
        rewritten, applied, _ = rewrites.apply(program, x)
        assert ("rfft as a four-step DFT: two small matmuls" in applied) == four_step, shape
        with torch.no_grad():
            torch.testing.assert_close(rewritten.module()(x), torch.fft.rfft(x).abs(), rtol=1e-4, atol=1e-4)


class Lambda(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)
