"""`board run|stop`: through the Bela IDE when it answers (board/ide_run.py), else over SSH with
Bela's Makefile (board/ssh_run.py). Both give {"project", "state", "via", "errors"}.

`connect` is called only when SSH is needed, so with the IDE up no SSH session is opened.
"""
from __future__ import annotations

from .ide_run import IdeUnreachable, ide_run, ide_stop
from .ssh_run import ssh_run, ssh_stop


async def run_program(board, project: str, ide_url: str | None, on_line=None, connect=None) -> dict:
    if ide_url:
        try:
            return await ide_run(ide_url, project, on_line)
        except IdeUnreachable as e:
            if on_line:
                on_line(f"{e.message}; building over SSH instead")
    if connect:
        await connect()
    return await ssh_run(board, project, on_line)


async def stop_program(board, project: str, ide_url: str | None, connect=None) -> dict:
    if ide_url:
        try:
            return await ide_stop(ide_url, project)
        except IdeUnreachable:
            pass
    if connect:
        await connect()
    return await ssh_stop(board, project)
