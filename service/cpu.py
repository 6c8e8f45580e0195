"""CPU load samples for the panel: this machine's, from /proc/stat (a board's come from board/)."""
from __future__ import annotations

from pathlib import Path


class ProcStatSampler:
    """Percent of CPU time busy between two calls, over all cores, from /proc/stat's first line."""

    def __init__(self, stat: Path = Path("/proc/stat")):
        self.stat = stat
        self.previous = self._read()

    def _read(self) -> tuple[int, int]:
        fields = [int(v) for v in self.stat.read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    def sample(self) -> float:
        total, idle = self._read()
        delta_total, delta_idle = total - self.previous[0], idle - self.previous[1]
        self.previous = (total, idle)
        return 0.0 if delta_total <= 0 else round(100.0 * (1 - delta_idle / delta_total), 1)
