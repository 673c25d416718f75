"""Drives a wasmnode MCP server with the official MCP Python SDK.

Usage:
  client.py stdio PLAN.json -- COMMAND ARGS...
  client.py http PLAN.json URL API_KEY

PLAN.json is a list of steps; each prints one JSON line:
  {"do": "list"}                              -> {"tools": {name: inputSchema}}
  {"do": "call", "tool": T, "args": {...}}    -> {"isError", "text", "structured"},
                                                 or {"rpcError": {"code", "message"}}
  {"do": "cancel", "tool": T, "args": {...}}  -> starts the call, cancels it once the
                                                 node reports it running -> {"cancelled": true, "progress": [...]}
"""

import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def emit(value):
    print(json.dumps(value), flush=True)


async def run_plan(session, plan):
    await session.initialize()
    for step in plan:
        if step["do"] == "list":
            listed = await session.list_tools()
            emit({"tools": {t.name: t.input_schema for t in listed.tools}})
        elif step["do"] == "call":
            try:
                result = await session.call_tool(step["tool"], step.get("args", {}))
            except MCPError as e:
                emit({"rpcError": {"code": e.error.code, "message": e.error.message}})
                continue
            text = "".join(getattr(c, "text", "") for c in result.content)
            emit({"isError": bool(result.is_error), "text": text,
                  "structured": result.structured_content})
        elif step["do"] == "cancel":
            progress = []
            running = anyio.Event()

            async def on_progress(done, total, message):
                progress.append(message)
                if message == "running":
                    running.set()

            async with anyio.create_task_group() as group:
                async def call():
                    await session.call_tool(step["tool"], step.get("args", {}),
                                            progress_callback=on_progress)
                group.start_soon(call)
                await running.wait()
                group.cancel_scope.cancel()
            emit({"cancelled": True, "progress": progress})
        else:
            raise SystemExit(f"unknown step {step}")


async def main():
    mode, plan_file = sys.argv[1], sys.argv[2]
    with open(plan_file) as f:
        plan = json.load(f)
    if mode == "stdio":
        command = sys.argv[sys.argv.index("--") + 1:]
        params = StdioServerParameters(command=command[0], args=command[1:],
                                       env=dict(__import__("os").environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await run_plan(session, plan)
    else:
        import httpx2
        url, key = sys.argv[3], sys.argv[4]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await run_plan(session, plan)


anyio.run(main)
