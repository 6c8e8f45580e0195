@ floorf, fmaxf and fminf for the Bela's kernel library, on the NEON unit, without libm.
@
@ IREE's approximation of exp (softmax, sigmoid, ELU, GELU...) and sin reduces its argument with
@ math.floor, and softmax's max reduction is arith.maxnumf. The Cortex-A8 has neither a rounding
@ instruction (vrintm came with ARMv8) nor an IEEE maxNum (vmaxnm, ARMv8 too), so LLVM calls
@ libm's floorf and fmaxf, once per vector lane, through the PLT. The kernels are linked with
@ these definitions instead (service/pipeline/arm_fma.py): a few NEON instructions, no table
@ lookup, no dynamic symbol. Hidden: the calls bind to them directly.
@
@ AAPCS-VFP: arguments in s0 (and s1), the result back in s0. d0-d7 and d16-d31 are scratch
@ registers the caller does not expect preserved; only d0-d3 are used.
@ NEON flushes subnormals to zero: floorf(-1e-40) gives 0, not -1, and floorf(-0.0) gives +0.0;
@ exp's range reduction and a max over activations do not see the difference (accuracy is
@ checked against PyTorch on every build).
        .syntax unified
        .arch armv7-a
        .fpu neon
        .text
        .arm

        .align 2
        .global floorf
        .hidden floorf
        .type floorf, %function
floorf:
        vcvt.s32.f32    d1, d0          @ x rounded toward zero, as an integer (lane 0: s2)
        vcvt.f32.s32    d1, d1          @ trunc(x)
        vcgt.f32        d2, d1, d0      @ all ones where trunc(x) > x: a negative x with a fraction
        vcvt.f32.s32    d2, d2          @ -1.0 there (the integer -1), 0.0 elsewhere
        vadd.f32        d1, d1, d2      @ floor(x), for |x| < 2^23
        vmov.i32        d3, #0x4b000000 @ 2^23: from there on every float is an integer
        vacgt.f32       d3, d3, d0      @ |x| < 2^23 (false for infinities and NaN)
        vbsl            d3, d1, d0      @ floor(x) there, x itself elsewhere
        vmov.f32        s0, s6          @ lane 0 of d3
        bx              lr
        .size floorf, .-floorf

@ fmaxf(a, b): the larger; a NaN operand is ignored (C's fmax, LLVM's maxnum)
        .align 2
        .global fmaxf
        .hidden fmaxf
        .type fmaxf, %function
fmaxf:
        vdup.32         d1, d0[1]       @ b in lane 0
        vcgt.f32        d2, d1, d0      @ b > a
        vceq.f32        d3, d0, d0      @ a is a number
        vorn            d2, d2, d3      @ b > a, or a is NaN: take b
        vbsl            d2, d1, d0
        vmov.f32        s0, s4          @ lane 0 of d2
        bx              lr
        .size fmaxf, .-fmaxf

@ fminf(a, b): the smaller; a NaN operand is ignored (C's fmin, LLVM's minnum)
        .align 2
        .global fminf
        .hidden fminf
        .type fminf, %function
fminf:
        vdup.32         d1, d0[1]       @ b in lane 0
        vcgt.f32        d2, d0, d1      @ a > b
        vceq.f32        d3, d0, d0      @ a is a number
        vorn            d2, d2, d3      @ a > b, or a is NaN: take b
        vbsl            d2, d1, d0
        vmov.f32        s0, s4          @ lane 0 of d2
        bx              lr
        .size fminf, .-fminf
        .section .note.GNU-stack,"",%progbits
