"""`HacoClient`'s calls for named queues (docs/resources.md): list, read, create, update, pause,
resume and delete. A base class of HacoClient, so SyncClient offers them too."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


class QueueCalls:
    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError  # HacoClient's

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue with a record or with jobs, and `default`: settings, `counts` by status, `ready`."""
        return list((await self.request("GET", "/api/queues"))["queues"])

    async def queue(self, name: str) -> dict[str, Any]:
        """One queue; raises RejectedNotFound (UNKNOWN_QUEUE) for none."""
        return dict((await self.request("GET", f"/api/queues/{quote(name, safe='')}"))["queue"])

    async def create_queue(self, name: str, *, max_running: int = 0, weight: int = 1,
                           priority: int = 0) -> dict[str, Any]:
        """A named queue (admin): at most `max_running` of its jobs run at once (0: no limit), its
        `weight` against other queues with work, the `priority` of its jobs that give none. The same
        settings again are `already`; others raise RejectedConflict (QUEUE_EXISTS): update it."""
        body = {"name": name, "max_running": max_running, "weight": weight, "priority": priority}
        return dict(await self.request("POST", "/api/queues", body=body))

    async def update_queue(self, name: str, *, max_running: int | None = None, weight: int | None = None,
                           priority: int | None = None) -> dict[str, Any]:
        """Change the settings given (admin); the others stay."""
        body = {k: v for k, v in (("max_running", max_running), ("weight", weight), ("priority", priority))
                if v is not None}
        return dict(await self.request("PATCH", f"/api/queues/{quote(name, safe='')}", body=body))

    async def pause_queue(self, name: str) -> dict[str, Any]:
        """Assign nothing more of this queue (admin); its running jobs go on."""
        return dict(await self.request("POST", f"/api/queues/{quote(name, safe='')}/pause"))

    async def resume_queue(self, name: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/queues/{quote(name, safe='')}/resume"))

    async def delete_queue(self, name: str) -> dict[str, Any]:
        """Delete a queue (admin); raises RejectedConflict (QUEUE_NOT_EMPTY) while jobs wait or run in it."""
        return dict(await self.request("DELETE", f"/api/queues/{quote(name, safe='')}"))
