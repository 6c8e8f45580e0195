"""The function symbols of a model's kernels, to name what the counting plugin saw run.

The plugin knows kernel functions only by their run-time entry addresses; the library inside a
.vmfb (or a program with the EmitC kernels linked in) says which function starts where.
readelf reads any ELF, whatever its machine.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from ..pipeline.elf_check import embedded_elf
from ..pipeline.tools import run_tool, system_tool

_SYMBOL = re.compile(r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+FUNC\s+\S+\s+\S+\s+(\d+)\s+(\S+)")


def function_symbols(elf: Path) -> dict[int, tuple[str, int]]:
    """{address: (name, size)} of the functions an ELF file defines (its .symtab and .dynsym)."""
    readelf = system_tool("readelf", "binutils")
    text = run_tool([readelf, "-sW", str(elf)], timeout=120, stage="benchmarking").stdout
    symbols = {}
    for line in text.splitlines():
        if m := _SYMBOL.match(line):
            size = int(m.group(2), 0)
            symbols.setdefault(int(m.group(1), 16), (m.group(4).split("@")[0], size))
    return symbols


def vmfb_kernel_names(vmfb: Path) -> dict[int, str]:
    """{address in the library: name} of the kernel library inside a .vmfb ({} if it has none)."""
    try:
        data = embedded_elf(vmfb)
    except ValueError:
        return {}
    with tempfile.TemporaryDirectory(prefix="bela-iree-symbols-") as tmp:
        library = Path(tmp) / "kernels.so"
        library.write_bytes(data)
        return {address: name for address, (name, _) in function_symbols(library).items()}


_DISPATCH_NAME = re.compile(rb"[A-Za-z0-9_$]+\$?dispatch_[A-Za-z0-9_]+")


def vmfb_dispatch_names(vmfb: Path) -> list[str]:
    """The dispatch functions the kernel library inside a .vmfb exports, in the order its export
    table lists them (the order LLVM lays the functions out in): names for a library whose
    symbols were stripped."""
    try:
        data = embedded_elf(vmfb)
    except ValueError:
        return []
    names: list[str] = []
    for m in _DISPATCH_NAME.finditer(data):
        name = m.group(0).decode()
        if name not in names:
            names.append(name)
    return names


def dispatch_range(program: Path) -> tuple[tuple[int, int] | None, dict[int, str]]:
    """The link-time address range of a program's dispatch functions (the EmitC kernels linked
    in), and the names of every function in the program."""
    symbols = function_symbols(program)
    spans = [(address & ~1, (address & ~1) + size) for address, (name, size) in symbols.items()
             if "_dispatch_" in name and size]
    names = {address: name for address, (name, _) in symbols.items()}
    if not spans:
        return None, names
    return (min(lo for lo, _ in spans), max(hi for _, hi in spans)), names
