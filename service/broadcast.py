"""The service's one outgoing channel: every event goes to every connected panel.

Built first in `serve` and handed to whoever publishes (the builder, a board session), so
nothing needs the HTTP server to exist. Each client gets a bounded queue: a client that stops
reading is dropped when its queue fills, and never slows the others. The latest message of the
STICKY types is replayed to each client that connects later.
"""
from __future__ import annotations

import asyncio
import json

CLIENT_QUEUE = 2000
STICKY = ("board",)


class Broadcaster:
    def __init__(self):
        self.queues: dict[object, asyncio.Queue] = {}
        self.sticky: dict[str, dict] = {}
        self.on_drop = lambda client: None   # the server closes a dropped client's socket

    def add(self, client) -> asyncio.Queue:
        """A new client: the queue its sender drains."""
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE)
        self.queues[client] = queue
        return queue

    def replay(self, client) -> None:
        """The latest sticky messages, to a client that just connected (after its greeting)."""
        for message in self.sticky.values():
            self.offer(client, message)

    def remove(self, client) -> None:
        self.queues.pop(client, None)

    @property
    def clients(self) -> list:
        return list(self.queues)

    def offer(self, client, message: dict, text: str | None = None) -> None:
        """One message to one client."""
        queue = self.queues.get(client)
        if queue is None:
            return
        try:
            queue.put_nowait(text or json.dumps(message))
        except asyncio.QueueFull:  # this client stopped reading: drop it, not the others
            self.remove(client)
            self.on_drop(client)

    def publish(self, message: dict) -> None:
        """One message to every client (and remembered, if sticky)."""
        if message["type"] in STICKY:
            self.sticky[message["type"]] = message
        text = json.dumps(message)
        for client in self.clients:
            self.offer(client, message, text)
