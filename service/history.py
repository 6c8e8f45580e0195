"""Build history in SQLite, inside the project's generated/ folder, so it survives restarts.

One row per build: when, target, flags, outcome, error, stage timings and latency figures.
Rows that were still running when a service died are closed as failed on the next start.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    reason TEXT,
    target TEXT NOT NULL,
    format TEXT,
    state TEXT NOT NULL,
    flags TEXT,
    stages TEXT,
    error TEXT,
    bench TEXT
);
"""
FINAL_STATES = ("done", "failed", "cancelled")
JSON_COLUMNS = ("flags", "stages", "error", "bench")


class History:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.db.execute("UPDATE builds SET state='failed', finished=?, error=? WHERE state NOT IN ('done','failed','cancelled')",
                        (time.time(), json.dumps({"stage": "service", "message": "the service stopped during this build"})))

    def start(self, target: str, fmt: str, reason: str) -> int:
        with self.lock:
            cursor = self.db.execute("INSERT INTO builds (started, reason, target, format, state, stages) VALUES (?,?,?,?,?,?)",
                                     (time.time(), reason, target, fmt, "queued", "{}"))
            return cursor.lastrowid

    def update(self, build_id: int, **values) -> None:
        if not values:
            return
        if values.get("state") in FINAL_STATES:
            values.setdefault("finished", time.time())
        columns = ", ".join(f"{name}=?" for name in values)
        encoded = [json.dumps(v) if name in JSON_COLUMNS else v for name, v in values.items()]
        with self.lock:
            self.db.execute(f"UPDATE builds SET {columns} WHERE id=?", (*encoded, build_id))

    def builds(self, limit: int = 1000) -> list[dict]:
        with self.lock:
            cursor = self.db.execute("SELECT * FROM builds ORDER BY id DESC LIMIT ?", (limit,))
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return [_row(dict(zip(names, row))) for row in rows]

    def close(self) -> None:
        with self.lock:
            self.db.close()


def _row(row: dict) -> dict:
    for name in JSON_COLUMNS:
        row[name] = json.loads(row[name]) if row[name] else None
    bench = row["bench"] or {}
    row["latency_ms"] = bench.get("latency_ms")
    row["deadline_ms"] = bench.get("deadline_ms")
    return row
