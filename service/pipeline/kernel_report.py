"""What each dispatch of a Bela kernel library executes: NEON or scalar VFP, and what it calls.

Read from the disassembly of the kernel library inside the .vmfb (elf_check.embedded_elf), per
dispatch function: instructions, how many are NEON (q registers, or d registers in non-double
arithmetic, or vld1-4/vst1-4) and how many scalar VFP (s registers, doubles, vldr/vstr, vmov
to and from core registers), the functions called, and which of those calls sit inside a loop
(a backward branch within the function). A call into the C library from a loop is the costly
case on the Cortex-A8 (the fmaf of IREE's approximations was one; arm_fma.py): the build warns
about every call into the C library from a dispatch.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .elf_check import embedded_elf
from .tools import run_tool, system_tool

_FUNCTION = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\t(\S+)\s*(.*)$")     # objdump -d --no-show-raw-insn
_TARGET = re.compile(r"^([0-9a-f]+)\s+<([^>+]+)(?:\+0x[0-9a-f]+)?>")
_Q_REGISTER, _D_REGISTER, _S_REGISTER = re.compile(r"\bq\d+\b"), re.compile(r"\bd\d+\b"), re.compile(r"\bs\d+\b")
_VFP_TRANSFERS = ("vldr", "vstr", "vpush", "vpop", "vmrs", "vmsr")
_BRANCH = re.compile(r"^b(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?(\.[wn])?$")


@dataclass
class DispatchReport:
    name: str
    instructions: int = 0
    neon: int = 0
    vfp: int = 0
    calls: Counter = field(default_factory=Counter)            # callee -> call sites
    calls_in_loops: Counter = field(default_factory=Counter)
    imports: set = field(default_factory=set)                   # callees that are not in the library

    def to_json(self) -> dict:
        return {"name": self.name, "instructions": self.instructions, "neon": self.neon, "vfp": self.vfp,
                "calls": dict(self.calls), "calls_in_loops": dict(self.calls_in_loops),
                "library_calls": sorted(self.imports),
                "library_calls_in_loops": {k: v for k, v in self.calls_in_loops.items() if k in self.imports}}


def classify(mnemonic: str, operands: str) -> str | None:
    """'neon', 'vfp' or None (integer, branch, ...) for one ARM instruction."""
    if not mnemonic.startswith("v"):
        return None
    if mnemonic.startswith(("vld1", "vld2", "vld3", "vld4", "vst1", "vst2", "vst3", "vst4")) or _Q_REGISTER.search(operands):
        return "neon"
    if mnemonic.startswith(_VFP_TRANSFERS) or _S_REGISTER.search(operands) or ".f64" in mnemonic:
        return "vfp"
    return "neon" if _D_REGISTER.search(operands) else "vfp"


def _is_branch(mnemonic: str) -> bool:
    """b and its conditional forms (bne, blt, ...); not bl/blx/bx, which call or return."""
    return bool(_BRANCH.match(mnemonic))


def parse_disassembly(text: str) -> list[DispatchReport]:
    """One report per dispatch function (`...dispatch...` symbols) of `objdump -d` output."""
    functions: list[tuple[str, int, list[tuple[int, str, str]]]] = []
    for line in text.splitlines():
        if m := _FUNCTION.match(line):
            functions.append((m.group(2), int(m.group(1), 16), []))
        elif functions and (m := _INSTRUCTION.match(line)):
            functions[-1][2].append((int(m.group(1), 16), m.group(2), m.group(3)))
    local = {name for name, _, body in functions if body and not name.endswith("@plt")}
    reports = []
    for name, start, body in functions:
        if "dispatch" not in name:
            continue
        report = DispatchReport(name)
        loops = []
        for address, mnemonic, operands in body:
            if _is_branch(mnemonic) and (t := _TARGET.match(operands)):
                target = int(t.group(1), 16)
                if start <= target < address:
                    loops.append((target, address))
        for address, mnemonic, operands in body:
            report.instructions += 1
            kind = classify(mnemonic, operands)
            if kind == "neon":
                report.neon += 1
            elif kind == "vfp":
                report.vfp += 1
            if mnemonic.split(".")[0] in ("bl", "blx") and (t := _TARGET.match(operands)):
                callee = t.group(2).removesuffix("@plt")
                report.calls[callee] += 1
                if callee not in local or t.group(2).endswith("@plt"):
                    report.imports.add(callee)
                if any(first <= address <= last for first, last in loops):
                    report.calls_in_loops[callee] += 1
        reports.append(report)
    return reports


def kernel_report(vmfb: Path) -> list[dict]:
    """The per-dispatch report of a Bela .vmfb's kernel library."""
    objdump = system_tool("arm-linux-gnueabihf-objdump", "binutils-arm-linux-gnueabihf")
    with tempfile.TemporaryDirectory(prefix="bela-iree-kernels-") as tmp:
        library = Path(tmp) / "kernels.so"
        library.write_bytes(embedded_elf(vmfb))
        text = run_tool([objdump, "-d", "--no-show-raw-insn", str(library)], timeout=120, stage="compile").stdout
    return [r.to_json() for r in parse_disassembly(text)]


def library_call_warnings(report: list[dict]) -> list[str]:
    """One warning per dispatch that calls into the C library. Inside its loops is the worst case,
    but a dispatch is itself a loop body when the model loops over time (a recurrent layer runs
    one dispatch per step), so every call site counts."""
    warnings = []
    for dispatch in report:
        calls = {name: sites for name, sites in dispatch["calls"].items() if name in dispatch["library_calls"]}
        if calls:
            in_loops = sum(dispatch["library_calls_in_loops"].values())
            listed = ", ".join(f"{name} ({sites} call sites)" for name, sites in sorted(calls.items()))
            warnings.append(f"{dispatch['name']} calls the C library: {listed}, {in_loops} of them inside its "
                            "loops; on the Cortex-A8 each call costs far more than the NEON arithmetic around it")
    return warnings


REPORT_FILE = "kernels.json"


def check_bela_kernels(result):
    """After a Bela vmfb compile: the per-dispatch report beside the .vmfb (kernels.json, which
    bench puts in its JSON as "kernels") and a warning for each dispatch calling the C library.
    Returns the CompileResult, so compile_model can return through it."""
    if result.target != "bela" or result.format != "vmfb" or result.backend != "llvm-cpu":
        return result
    vmfb = result.artifacts[0]
    report = kernel_report(vmfb)
    (vmfb.parent / REPORT_FILE).write_text(json.dumps(report, indent=1))
    return result.but(warnings=result.warnings + tuple(library_call_warnings(report)))
