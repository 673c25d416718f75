"""Drives a wasmnode MCP server with the official MCP Python SDK.

Usage:
  client.py stdio PLAN.json -- COMMAND ARGS...
  client.py http PLAN.json URL API_KEY

PLAN.json is a list of steps; each prints one JSON line:
  {"do": "list"}                              -> {"tools": {name: inputSchema},
                                                  "outputs": {name: outputSchema}}
  {"do": "call", "tool": T, "args": {...}}    -> {"isError", "text", "structured"},
                                                 or {"rpcError": {"code", "message"}}
  {"do": "cancel", "tool": T, "args": {...}}  -> starts the call, cancels it once the
                                                 node reports it running -> {"cancelled": true, "progress": [...]}
  {"do": "add_plugin", "from": F, "to": T, "expect": N}
                                              -> copies F into the plugin directory as T, waits for
                                                 notifications/tools/list_changed until tool N is
                                                 listed -> {"tools": [names]}
"""

import json
import os
import shutil
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def emit(value):
    print(json.dumps(value), flush=True)


class Notes:
    """What the server announced."""

    def __init__(self):
        self.tools_changed = anyio.Event()

    async def handle(self, message):
        message = getattr(message, "root", message)
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            self.tools_changed.set()


async def run_plan(session, plan, notes):
    await session.initialize()
    for step in plan:
        if step["do"] == "list":
            listed = await session.list_tools()
            emit({"tools": {t.name: t.input_schema for t in listed.tools},
                  "outputs": {t.name: t.output_schema for t in listed.tools}})
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
        elif step["do"] == "add_plugin":
            part = step["to"] + ".part"
            shutil.copyfile(step["from"], part)
            os.rename(part, step["to"])
            with anyio.fail_after(120):
                while True:
                    await notes.tools_changed.wait()
                    notes.tools_changed = anyio.Event()
                    listed = await session.list_tools()
                    names = sorted(t.name for t in listed.tools)
                    if step["expect"] in names:
                        break
            emit({"tools": names})
        else:
            raise SystemExit(f"unknown step {step}")


async def main():
    mode, plan_file = sys.argv[1], sys.argv[2]
    with open(plan_file) as f:
        plan = json.load(f)
    notes = Notes()
    if mode == "stdio":
        command = sys.argv[sys.argv.index("--") + 1:]
        params = StdioServerParameters(command=command[0], args=command[1:],
                                       env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write, message_handler=notes.handle) as session:
                await run_plan(session, plan, notes)
    else:
        import httpx2
        url, key = sys.argv[3], sys.argv[4]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write, message_handler=notes.handle) as session:
                    await run_plan(session, plan, notes)


anyio.run(main)
