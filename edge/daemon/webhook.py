"""The alert webhook: each change is POSTed (JSON) to the alert's URL, from a durable queue of its
own (an outbox file beside the MQTT one), by one thread, in order.

The executor only commits a row and wakes the thread: a webhook that is slow or down never holds
the pipeline. A failed POST (no connection, a timeout, a status outside 2xx) is retried with
backoff (1 s doubling to `RETRY_MAX_S`) until it is taken; a restart resumes from the file. A
receiver that answers 4xx other than 408/429 refuses the request for good: that row is dropped,
counted and logged (retrying would be refused again).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from edge.mqtt.outbox import Outbox
from edge.mqtt.outbox_records import OutboxMessage, StoredMessage

log = logging.getLogger(__name__)

RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
MAX_BYTES = 8 << 20


class WebhookSender:
    def __init__(self, path: Path, timeout_s: float = 5.0) -> None:
        self.outbox = Outbox(path, MAX_BYTES)
        self.timeout_s = timeout_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self.sent = 0
        self.failures = 0  # failed tries (each retried)
        self.refused = 0  # dropped: the receiver refused the request itself

    def post(self, url: str, body: dict[str, object], msg_id: str) -> None:
        """Queue a POST; returns at once (the row is committed before it returns)."""
        self.outbox.enqueue(
            OutboxMessage(
                topic=url,
                payload=json.dumps(body, separators=(",", ":")).encode(),
                msg_id=msg_id,
                kind="event",
                content_type="application/json",
            )
        )
        self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.outbox.close()

    @property
    def depth(self) -> int:
        return self.outbox.depth()

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            batch = self.outbox.next_batch(0, 1)
            if not batch:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            outcome = self._send(batch[0])
            if outcome == "retry":
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            self.outbox.delete([batch[0].row])

    def _send(self, stored: StoredMessage) -> str:
        import urllib.error  # urllib.request brings http.client and email: only where a webhook is set
        import urllib.request

        m = stored.message
        req = urllib.request.Request(
            m.topic,
            data=m.payload,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": m.msg_id},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (http(s) checked in settings)
                resp.read(1024)
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500 and err.code not in (408, 429):
                self.refused += 1
                log.error("webhook %s refused %s: HTTP %d; dropped", m.topic, m.msg_id, err.code)
                return "refused"
            return self._failed(m, f"HTTP {err.code}")
        except (urllib.error.URLError, OSError, ValueError) as err:
            return self._failed(m, str(getattr(err, "reason", err)))
        self.sent += 1
        return "sent"

    def _failed(self, m: OutboxMessage, why: str) -> str:
        self.failures += 1
        if self.failures == 1 or self.failures % 20 == 0:
            log.warning("webhook %s: %s not delivered (%s); retrying with backoff", m.topic, m.msg_id, why)
        return "retry"


def webhook_path(outbox_path: Path) -> Path:
    return outbox_path.with_name(outbox_path.stem + ".webhook.sqlite")
