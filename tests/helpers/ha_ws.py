"""Home Assistant's websocket API from the command line; runs under Home Assistant's own Python.

Kept out of the project's venv (aiohttp comes with Home Assistant). Usage:
    python ha_ws.py URL TOKEN '[{"type": "config/entity_registry/list"}, ...]'
prints one JSON list: the `result` of each command, in order (an error fails with exit status 1).
"""

import asyncio
import json
import sys

import aiohttp


async def main(url: str, token: str, commands: list) -> list:
    results = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url.rstrip("/") + "/api/websocket") as ws,
    ):
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": token})
        reply = await ws.receive_json()
        if reply.get("type") != "auth_ok":
            raise SystemExit(f"websocket auth failed: {reply}")
        for i, command in enumerate(commands, start=1):
            await ws.send_json({"id": i, **command})
            while True:
                reply = await ws.receive_json()
                if reply.get("id") == i and reply.get("type") == "result":
                    break
            if not reply.get("success"):
                raise SystemExit(f"{command['type']} failed: {reply.get('error')}")
            results.append(reply.get("result"))
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))))
