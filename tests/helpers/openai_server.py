"""A small scripted OpenAI-compatible server for the http backend's tests (127.0.0.1 only, threads).

`mode` picks what POST /v1/chat/completions does: "ok" (an SSE stream of `tokens`, a usage chunk,
[DONE]), "json" (one non-streamed answer), "status" (`status` with an error body and `headers`),
"stall" (two tokens, then silence until the server stops), "garbage" (a non-JSON event), "endless"
(tokens until the client hangs up, ignoring max_tokens), "huge" (megabytes of content),
"no_schema" (400 when response_format is sent, else "ok"). GET /v1/models lists `models`. With
`key` set, a request without `Authorization: Bearer <key>` gets 401. Every request is recorded.
The backend's probes (non-streamed, max_tokens 1 or a response_format check) get a JSON answer whose
prompt_tokens grow by 16 per image while `vision` is set; `chats()` leaves them out, `probes()` has them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIStub:
    def __init__(self) -> None:
        self.mode = "ok"
        self.tokens = ["A", " red", " circle", "."]
        self.finish = "stop"
        self.models = ["phi"]
        self.key: str | None = None
        self.status = 500
        self.status_body: dict[str, Any] = {"error": {"message": "internal failure", "type": "server_error"}}
        self.headers: dict[str, str] = {}
        self.vision = True
        self.token_s = 0.0
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body"}
        self.stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")  # no kept-alive connection outlives the server
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def _authorised(self) -> bool:
                if stub.key and self.headers.get("Authorization") != f"Bearer {stub.key}":
                    self._json(401, {"error": {"message": "invalid api key", "type": "auth"}})
                    return False
                return True

            def do_GET(self) -> None:
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
                if not self._authorised():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._json(
                        200, {"object": "list", "data": [{"id": m, "object": "model"} for m in stub.models]}
                    )
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if not self._authorised():
                    return
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if body.get("model") not in stub.models:
                    self._json(404, {"error": {"message": f"model {body.get('model')!r} not found"}})
                    return
                if body.get("stream") is False and stub.mode in ("ok", "stall", "endless", "no_schema"):
                    self._probe(body)
                    return
                mode = stub.mode
                if mode == "no_schema":
                    if "response_format" in body:
                        self._json(400, {"error": {"message": "response_format is not supported"}})
                        return
                    mode = "ok"
                if mode == "status":
                    self._json(stub.status, stub.status_body, stub.headers)
                    return
                if mode == "json":
                    self._json(200, {
                        "id": "c1", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(stub.tokens)},
                                     "finish_reason": stub.finish}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": len(stub.tokens), "total_tokens": 7},
                    })  # fmt: skip
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._stream(mode, body)
                self.close_connection = True

            def _probe(self, body: dict[str, Any]) -> None:
                content = body["messages"][-1]["content"]
                images = (
                    sum(1 for p in content if p.get("type") == "image_url")
                    if isinstance(content, list)
                    else 0
                )
                prompt = 7 + (16 * images if stub.vision else 0)
                self._json(200, {
                    "id": "p1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"ok\": true}"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1},
                })  # fmt: skip

            def _event(self, payload: Any) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            def _chunk(self, content: str | None, finish: str | None = None) -> dict[str, Any]:
                delta = {"content": content} if content is not None else {}
                return {"id": "c1", "object": "chat.completion.chunk", "model": stub.models[0],
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip

            def _stream(self, mode: str, body: dict[str, Any]) -> None:
                self._event(self._chunk(None) | {"choices": [{"index": 0, "delta": {"role": "assistant"},
                                                              "finish_reason": None}]})  # fmt: skip
                if mode == "garbage":
                    self._event(self._chunk("ok"))
                    self._event("{this is not json")
                    return
                if mode == "huge":
                    block = "x" * 65536
                    for _ in range(64):
                        self._event(self._chunk(block))
                    return
                if mode in ("stall", "endless"):
                    n = 0
                    while not stub.stopping.is_set():
                        n += 1
                        self._event(self._chunk(f" t{n}"))
                        if mode == "stall" and n >= 2:
                            stub.stopping.wait(60)
                            return
                        time.sleep(stub.token_s or 0.005)
                    return
                for tok in stub.tokens:
                    if stub.token_s:
                        time.sleep(stub.token_s)
                    self._event(self._chunk(tok))
                self._event(self._chunk(None, stub.finish))
                usage = {
                    "prompt_tokens": 7,
                    "completion_tokens": len(stub.tokens),
                    "total_tokens": 7 + len(stub.tokens),
                }
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event(
                        {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
                    )
                self._event("[DONE]")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.base}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, name="openai-stub", daemon=True)

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def chats(self) -> list[dict[str, Any]]:
        """The chat requests of jobs (the backend's non-streamed probes left out)."""
        return [b for b in self._posted() if b.get("stream") is not False]

    def probes(self) -> list[dict[str, Any]]:
        return [b for b in self._posted() if b.get("stream") is False]

    def _posted(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"] == "/v1/chat/completions"]


def chain_load(settings: Any) -> Any:
    """Loader seam for chain tests: backend "http" is the real one, anything else the fake backend."""
    from edge.inference import registry
    from tests.helpers import fake_backend

    if settings.backend == "http":
        return registry.load_backend(settings)
    return fake_backend.load(settings)
