"""The boards bela-iree compiles for, and the iree-compile flags that work on each.

The flags are the measured ones of docs/design.md ("Measured IREE facts"); the reasons are in the comments because
each one was a crash before.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

FORMATS = ("vmfb", "emitc")
BACKENDS = ("llvm-cpu", "vmvx")


@dataclass(frozen=True)
class Target:
    name: str
    board: str
    arch: str                 # x86_64 | aarch64 | armv7
    triple: str | None        # None: the host's own
    cpu: str | None
    core: str = "host"        # the board's core, as qemu names it (-cpu)
    features: str | None = None

    @property
    def inline_hal(self) -> bool:
        """A .vmfb for a board runs on IREE's inline HAL (inline_hal.py): a dispatch is a call.
        The host keeps the async HAL, whose figures zoo_vs_peers measured. BELA_IREE_INLINE_HAL=0
        builds the boards' async form again (to compare, or should a model need it)."""
        return self.arch != "x86_64" and os.environ.get("BELA_IREE_INLINE_HAL", "1") != "0"

    def flags(self, backend: str) -> list[str]:
        flags = ["--iree-hal-target-device=local", f"--iree-hal-local-target-device-backends={backend}"]
        if backend != "llvm-cpu":
            return flags
        if self.triple:
            flags.append(f"--iree-llvmcpu-target-triple={self.triple}")
        if self.cpu:
            flags.append(f"--iree-llvmcpu-target-cpu={self.cpu}")
        if self.features:
            flags.append(f"--iree-llvmcpu-target-cpu-features={self.features}")
        if self.arch == "armv7":
            flags += [
                "--iree-llvmcpu-target-float-abi=hard",
                # debug symbols make the kernels import __aeabi_unwind_cpp_pr0, which the runtime refuses
                "--iree-llvmcpu-debug-symbols=false",
            ]
        return flags

    def vmfb_link_flags(self) -> list[str]:
        """How kernels are linked into a .vmfb. On armv7 the embedded ELF linker produces kernels
        that segfault in every math call (and cannot link fmaxf): link a system shared library
        with the ARM binutils instead, loaded by the runtime's system-library loader."""
        if self.arch != "armv7":
            return []
        from .arm_fma import linker_with_fmaf   # and our multiply-add for fmaf (arm_fma.py)
        return ["--iree-llvmcpu-link-embedded=false", f"--iree-llvmcpu-system-linker-path={linker_with_fmaf()}"]

    def emitc_flags(self, backend: str, kernels: Path) -> list[str]:
        flags = ["--output-format=vm-c"]
        if backend == "llvm-cpu":
            # kernels become a static object + header registered with the static library loader
            flags += ["--iree-llvmcpu-link-embedded=false", "--iree-llvmcpu-link-static",
                      f"--iree-llvmcpu-static-library-output-path={kernels}"]
        return flags


TARGETS = {t.name: t for t in [
    Target("host", "this computer", "x86_64", None, "host"),
    Target("bela", "Bela / Bela Mini / CTAG (BeagleBone Black, Cortex-A8)", "armv7",
           "armv7a-pc-linux-gnueabihf", None, "cortex-a8", features="+neon"),
    Target("gem", "Bela Gem (PocketBeagle 2, Cortex-A53)", "aarch64", "aarch64-none-linux-gnu", "cortex-a53",
           "cortex-a53"),
    Target("bbai64", "BeagleBone AI-64 (Cortex-A72)", "aarch64", "aarch64-none-linux-gnu", "cortex-a72", "cortex-a72"),
]}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise UsageError(f"unknown target {name!r}", hint=f"use one of: {', '.join(TARGETS)}")
    return TARGETS[name]
