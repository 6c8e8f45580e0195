"""CPU figures from a Bela board, computed the way the Bela IDE's toolbar computes them.

On Xenomai 3, /proc/xenomai/sched/stat has one line per real-time thread:
    CPU  PID    MSW        CSW        XSC        PF    STAT       %CPU  NAME
The IDE's "CPU" is the sum of %CPU over every thread except [ROOT] (Linux) and the IRQ line,
plus Linux's own load scaled by ROOT's share; its "MSW" is the audio thread's (bela-audio)
mode switches beyond the one every run makes. Without Xenomai, /proc/stat gives the load
(service/cpu.py's `proc_stat_busy`, the parser this machine's load uses too).
"""
from __future__ import annotations

from dataclasses import dataclass

ROOT, IRQ, HEADER, AUDIO_THREAD = "[ROOT]", "[IRQ16:", "NAME", "bela-audio"
NORMAL_MODE_SWITCHES = 1


@dataclass
class XenomaiLoad:
    total: float                 # what the IDE shows as CPU %
    audio: float | None          # the audio thread's own %CPU
    mode_switches: int | None    # the audio thread's MSW beyond the normal one
    threads: dict[str, float]


def parse_sched_stat(text: str, linux_percent: float | None = None) -> XenomaiLoad:
    total, root_share, audio, msw, threads = 0.0, 1.0, None, None, {}
    for line in text.splitlines():
        columns = line.split()
        if len(columns) < 9:
            continue
        name = columns[8]
        try:
            cpu = float(columns[7])
        except ValueError:
            continue  # the header
        if name == ROOT:
            root_share = cpu * 0.01
            continue
        if name in (HEADER, IRQ):
            continue
        threads[name] = threads.get(name, 0.0) + cpu
        total += cpu
        if name == AUDIO_THREAD:
            audio = cpu
            msw = int(columns[2]) - NORMAL_MODE_SWITCHES
    if linux_percent:
        total += linux_percent * root_share
    return XenomaiLoad(round(total, 2), audio, msw, threads)
