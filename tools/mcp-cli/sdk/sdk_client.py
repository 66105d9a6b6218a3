"""The official MCP Python SDK's Streamable HTTP client against microkernelia.

usage: sdk_client.py URL

Initializes, lists tools, calls `infer` with a progress callback (every decoded piece
arrives as a progress notification, and the pieces add up to the result's text), cancels a
long `infer` after a few pieces (the SDK sends notifications/cancelled when the call's scope
is cancelled), checks the session still answers, and prints a JSON summary. Exits non-zero
on any failure.
"""

import json
import sys
import time

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

PROMPT = "Once upon a time"


async def main(url: str) -> dict:
    summary = {}
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            summary["protocol"] = init.protocol_version
            summary["server"] = init.server_info.name
            tools = await session.list_tools()
            names = [t.name for t in tools.tools]
            summary["tools"] = names
            assert "infer" in names and "health" in names, names

            pieces = []

            async def on_progress(progress, total, message):
                pieces.append(message or "")

            result = await session.call_tool(
                "infer",
                {"prompt": PROMPT, "max_tokens": 16, "temperature": 0},
                progress_callback=on_progress,
            )
            assert not result.is_error, result
            stats = result.structured_content
            assert stats["completion_tokens"] == 16, stats
            assert len(pieces) == 16, pieces
            assert "".join(pieces) == stats["text"], (pieces, stats["text"])
            summary["infer_text"] = stats["text"]

            seen = 0
            started = time.monotonic()
            with anyio.CancelScope() as scope:

                async def cancel_after_three(progress, total, message):
                    nonlocal seen
                    seen += 1
                    if seen == 3:
                        scope.cancel()

                await session.call_tool(
                    "infer",
                    {"prompt": PROMPT, "max_tokens": 400, "temperature": 0},
                    progress_callback=cancel_after_three,
                )
            assert scope.cancelled_caught, "the call finished instead of being cancelled"
            summary["cancelled_after_pieces"] = seen

            # The session still works, and the cancelled generation is not in the way:
            # the next (exclusive) infer runs right after it.
            result = await session.call_tool("infer", {"prompt": PROMPT, "max_tokens": 2})
            assert not result.is_error, result
            summary["after_cancel_s"] = round(time.monotonic() - started, 2)
            health = await session.call_tool("health", {})
            assert not health.is_error, health
            summary["health_requests"] = health.structured_content["requests_served"]
    return summary


if __name__ == "__main__":
    out = anyio.run(main, sys.argv[1])
    print(json.dumps(out))
