"""CPU load from /proc/stat: this machine's for the panel, and the one parser a board's
Linux load (board/session.py) goes through too."""
from __future__ import annotations

from pathlib import Path


def _totals(text: str) -> tuple[int, int]:
    """(all jiffies, idle + iowait jiffies) from /proc/stat's first line."""
    fields = [int(v) for v in text.splitlines()[0].split()[1:]]
    return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)


def proc_stat_busy(before: str, after: str) -> float:
    """Percent busy, over all cores, between two readings of /proc/stat (its first line counts)."""
    (total0, idle0), (total1, idle1) = _totals(before), _totals(after)
    delta = total1 - total0
    return 0.0 if delta <= 0 else round(100.0 * (1 - (idle1 - idle0) / delta), 1)


class ProcStatSampler:
    """Percent of CPU time busy between two calls, over all cores, from this machine's /proc/stat."""

    def __init__(self, stat: Path = Path("/proc/stat")):
        self.stat = stat
        self.previous = self._read()

    def _read(self) -> str:
        return self.stat.read_text().splitlines()[0]

    def sample(self) -> float:
        current = self._read()
        busy = proc_stat_busy(self.previous, current)
        self.previous = current
        return busy
