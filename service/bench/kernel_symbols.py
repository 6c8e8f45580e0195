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


def function_symbols(elf: Path) -> list[tuple[int, str, int]]:
    """(address, name, size) of each function an ELF file defines (its .symtab and .dynsym; an
    object file's are all at 0 of their own sections)."""
    readelf = system_tool("readelf", "binutils")
    text = run_tool([readelf, "-sW", str(elf)], timeout=120, stage="benchmarking").stdout
    return [(int(m.group(1), 16), m.group(4).split("@")[0], int(m.group(2), 0))
            for m in map(_SYMBOL.match, text.splitlines()) if m]


def vmfb_kernel_names(vmfb: Path) -> dict[int, str]:
    """{address in the library: name} of the kernel library inside a .vmfb ({} if it has none)."""
    try:
        data = embedded_elf(vmfb)
    except ValueError:
        return {}
    with tempfile.TemporaryDirectory(prefix="bela-iree-symbols-") as tmp:
        library = Path(tmp) / "kernels.so"
        library.write_bytes(data)
        return {address: name for address, name, _ in function_symbols(library)}


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


def dispatch_range(program: Path, kernels: Path) -> tuple[tuple[int, int] | None, dict[int, str]]:
    """The link-time address range of a program's kernel functions (those the EmitC kernel object
    `kernels` defines, linked in), and their names by address."""
    defined = {name for _, name, _ in function_symbols(kernels) if "dispatch" in name}
    mine = {address & ~1: (name, size) for address, name, size in function_symbols(program) if name in defined}
    spans = [(address, address + size) for address, (_, size) in mine.items() if size]
    names = {address: name for address, (name, _) in mine.items()}
    if not spans:
        return None, names
    return (min(lo for lo, _ in spans), max(hi for _, hi in spans)), names
