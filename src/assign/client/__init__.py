"""Python clients of an Assign service, over httpx, blocking and asyncio.

For an assign service (worker API), a tool server (tool API) and an operator (admin API)::

    from assign.client import ApiError, AsyncToolClient

    async with AsyncToolClient("http://127.0.0.1:8000", server_key) as tool:
        await tool.heartbeat()
        for link in await tool.claim(limit=5):
            await tool.report_result(link["id"], "completed", profile_url="https://...")

Answers are plain dicts (typed in :mod:`assign.client.types`); a non-2xx answer raises
:class:`ApiError` with its ``status_code``, ``message`` and ``details``. Network failures raise
httpx's own exceptions (``httpx.TransportError``). Importing this package loads httpx only.
"""

from assign.client.admin import AdminClient, AsyncAdminClient
from assign.client.core import ApiError
from assign.client.tool import AsyncToolClient, ToolClient
from assign.client.worker import AssignClient, AsyncAssignClient

__all__ = [
    "AdminClient",
    "ApiError",
    "AssignClient",
    "AsyncAdminClient",
    "AsyncAssignClient",
    "AsyncToolClient",
    "ToolClient",
]
