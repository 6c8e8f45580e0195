@ fmaf for the Bela's kernel library: a multiply, then an add, on the NEON unit.
@
@ IREE's approximations of tanh, exp, log, sin... are written with fused multiply-adds. The
@ Cortex-A8 has no fused multiply-add instruction (VFPv4 came after it), so LLVM calls libm's
@ fmaf for each one, per vector lane: glibc computes the exactly rounded fused result in
@ software, dozens of instructions each. The approximations do not need the fused rounding
@ (accuracy is checked against PyTorch on every build), so the kernels are linked with this
@ definition instead (service/pipeline/arm_fma.py). Hidden: the calls bind to it directly,
@ without a PLT stub or a dynamic lookup.
@
@ AAPCS-VFP: a, b, c arrive in s0, s1, s2 (lanes 0 and 1 of d0, lane 0 of d1); the result
@ goes back in s0. d16 is a scratch register the caller does not expect preserved.
        .syntax unified
        .arch armv7-a
        .fpu neon
        .text
        .arm
        .align 2
        .global fmaf
        .hidden fmaf
        .type fmaf, %function
fmaf:
        vmul.f32 d16, d0, d0[1]         @ lane 0: a * b
        vadd.f32 d0, d16, d1            @ lane 0: a * b + c
        bx lr
        .size fmaf, .-fmaf
        .section .note.GNU-stack,"",%progbits
