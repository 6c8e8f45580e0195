"""Makes IREE 3.13's EmitC `module.c` call imports with the runtime's own argument layout.
Applied to every module.c bela-iree writes.

EmitC packs each import call's arguments and results into a byte buffer; the runtime unpacks
it with the layout of its own C structs (iree/vm/shims.h, computed by
`iree_vm_function_call_compute_cconv_fragment_size`). The two disagree in two places:

1. References (`iree_vm_ref_t`): EmitC aligns them to 8 bytes, their alignment on the 64-bit
   computer that ran the compiler; the runtime aligns them to `iree_alignof(iree_vm_ref_t)`, 4 on
   32-bit ARM. Where a reference follows a 4-byte field (the count of a variadic list, as in
   hal.fence.join and hal.fence.await), the runtime reads it from the padding: "ref type
   mismatch". Every model on Bela joins or awaits fences.
2. Variadic lists (spans) whose elements hold an 8-byte value: the runtime aligns the list's
   start to that; EmitC aligns only before each 8-byte value or reference, so a list starting
   with a 4-byte field (hal.command_buffer.dispatch's bindings: ordinal, flags, buffer, offset,
   length) can start 4 bytes early: "access outside of the bound buffer range". That one
   breaks models with push constants on 64-bit targets too (basic_mlp on x86-64).

The fix walks each import shim's code in step with its calling convention (the shim's name
spells it: `module_call_0rIrrrICrIID_v_3_import_shim` takes r, I, r, r, r, I and a list of three
(r, I, I)), and gives every alignment the runtime's value: `iree_alignof(iree_vm_ref_t)` before a
reference, 8 before a 64-bit value, the largest of its elements at a list's start and at the
end of the buffer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

REF_ALIGNMENT = "iree_alignof(iree_vm_ref_t)"
MARK = "// bela-iree: import calls laid out as the runtime reads them (service/pipeline/emitc_fix.py)"
EMITC_FIX = "bela-iree-emitc-layout-2"   # in the compile cache key: modules fixed this way only

_SHIM = re.compile(r"^static iree_status_t module_call_0([a-zA-Z]*)_([a-zA-Z]*)((?:_\d+)*)_import_shim\(.*\{$")
_ALIGN = re.compile(r"^  (v\d+) = iree_host_align\((v\d+), [^;]+\);$")
_SIZEOF = re.compile(r"^  (v\d+) = sizeof\(\w+\);$")
_STEP = re.compile(r"^  (v\d+) = (v\d+) \+ (v\d+);$")
_SIZE_WALK = re.compile(r"^  v\d+ = 0;$")
_DATA_WALK = re.compile(r"\.(arguments|results)\)\.data;$")


@dataclass
class Element:
    alignment: str | None      # before it: a C expression, or None (4-byte values need none)
    pad_after: str | None = None   # after it: a variadic list's count, padded to its elements' alignment


def layout(types: str, span_counts: list[int]) -> list[Element]:
    """The buffer of one calling-convention fragment, element by element, as the runtime lays it out."""
    own = {"i": None, "f": None, "I": "8", "F": "8", "r": REF_ALIGNMENT}
    elements, counts = [], iter(span_counts)
    for m in re.finditer(r"C([a-zA-Z]*?)D|[a-zA-Z]", types):
        if m.group(1) is None:
            if m.group(0) != "v":
                elements.append(Element(own[m.group(0)]))
            continue
        count, tuple_types = next(counts, 0), m.group(1)
        widest = _widest(tuple_types)
        elements.append(Element(None, pad_after=widest if count else None))
        elements += [Element(own[t]) for _ in range(count) for t in tuple_types]
    return elements


def _widest(types: str) -> str | None:
    return "8" if re.search("[IF]", types) else REF_ALIGNMENT if "r" in types else None


def fix_import_layout(source: str) -> str:
    """module.c with every import call's buffers laid out as the runtime lays them out."""
    if MARK in source:
        return source
    lines = source.split("\n")
    walker = None
    for index, line in enumerate(lines):
        started = _SHIM.match(line)
        if started:
            counts = [int(n) for n in started.group(3).split("_") if n]
            walker = _Walker({"arguments": layout(started.group(1), counts),
                              "results": layout(started.group(2), [])},
                             {"arguments": _widest(started.group(1)), "results": _widest(started.group(2))})
        elif walker is not None:
            if line == "}":
                walker = None
            else:
                lines[index] = walker.rewrite(line)
    return MARK + "\n" + "\n".join(lines)


class _Walker:
    """Follows one shim: it walks its argument buffer three times (size, packing, releasing the
    references after the call) and its result buffer twice, one element at a time."""

    def __init__(self, buffers: dict[str, list[Element]], end_alignment: dict[str, str | None]):
        self.buffers, self.end_alignment = buffers, end_alignment
        self.buffer, self.position, self.sizes = None, 0, set()
        self.pointers = False   # walking the buffer itself (packing, releasing, unpacking), not its size

    def rewrite(self, line: str) -> str:
        if _SIZE_WALK.match(line):   # a size computation: arguments first, then results
            self.buffer, self.position = "arguments" if self.buffer is None else "results", 0
            return line
        data = _DATA_WALK.search(line)
        if data:
            self.buffer, self.position, self.pointers = data.group(1), 0, True
            return line
        if self.buffer is None:
            return line
        elements = self.buffers[self.buffer]
        sizeof = _SIZEOF.match(line)
        if sizeof:
            self.sizes.add(sizeof.group(1))
            return line
        align = _ALIGN.match(line)
        if align:
            if self.position < len(elements):
                alignment = elements[self.position].alignment
            else:   # the end of the buffer: padded to its widest element
                alignment = self.end_alignment[self.buffer]
            return f"  {align.group(1)} = iree_host_align({align.group(2)}, {alignment or 4});"
        step = _STEP.match(line)
        if step and step.group(3) in self.sizes and self.position < len(elements):
            pad = elements[self.position].pad_after
            self.position += 1
            if pad and self.pointers:
                return (f"  {step.group(1)} = (uint8_t*) iree_host_align((uintptr_t) ({step.group(2)} + "
                        f"{step.group(3)}), {pad});")
            if pad:
                return f"  {step.group(1)} = iree_host_align({step.group(2)} + {step.group(3)}, {pad});"
        return line
