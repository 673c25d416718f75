"""`word_count`: an example wasmnode plugin tool in Python. It counts the
lines, words and bytes of a file in a directory the caller mounts.

A tool implements the `wasmnode:tool` world (wit/tool.wit): `describe()`
says who it is, what arguments it takes (a JSON Schema the node checks
before the tool runs) and what it needs; `invoke(args)` takes a JSON object
and returns a JSON document, or raises `Err(ToolError_...)`. The host mounts
only what the caller asked for, read-only unless the tool declares `writes`,
with no network. Settings come through `config` (the operator's
`[tools.word_count.config]`), log records go through `log`.
"""

import json
import os

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, log
from wit_world.imports.types import (
    Capabilities,
    ToolError_Denied,
    ToolError_Failed,
    ToolError_InvalidArgs,
    ToolError_NotFound,
    ToolInfo,
)

NAME = "word_count"
VERSION = "0.1.0"
ARGS_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {"path": {"type": "string"}},
}
# Largest file counted unless the `max_bytes` setting says otherwise.
DEFAULT_MAX_BYTES = 10 << 20


def count(path: str, text: str) -> dict:
    """The counts of `text`, read from `path`."""
    return {
        "path": path,
        "lines": len(text.splitlines()),
        "words": len(text.split()),
        "bytes": len(text.encode()),
    }


class WitWorld(wit_world.WitWorld):
    def describe(self) -> ToolInfo:
        return ToolInfo(
            name=NAME,
            version=VERSION,
            description="Count the lines, words and bytes of a file",
            args_schema=json.dumps(ARGS_SCHEMA),
            capabilities=Capabilities(mounts=[], writes=False),
        )

    def invoke(self, args: str) -> str:
        path = json.loads(args)["path"]
        setting = config.get("max_bytes")
        try:
            max_bytes = DEFAULT_MAX_BYTES if setting is None else int(setting)
        except ValueError:
            raise Err(ToolError_InvalidArgs(f"setting max_bytes `{setting}` is not a number"))
        try:
            size = os.stat(path).st_size
            if size > max_bytes:
                raise Err(ToolError_InvalidArgs(f"{path} is {size} bytes, over max_bytes ({max_bytes})"))
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise Err(ToolError_NotFound(f"{path}: no such file"))
        except PermissionError as e:
            raise Err(ToolError_Denied(f"{path}: {e}"))
        except OSError as e:
            raise Err(ToolError_Failed(f"{path}: {e}"))
        log.log(log.Level.INFO, f"counted {path} ({size} bytes)")
        return json.dumps(count(path, text))
