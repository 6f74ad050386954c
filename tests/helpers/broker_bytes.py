"""What a dedicated mosquitto says it received: `$SYS/broker/bytes/received`, the broker's own count
of every byte from every client (published each `sys_interval`, configured to 1 s here).

The figure includes the readers' own packets (this one's CONNECT and SUBSCRIBE before the baseline,
a consumer's PUBACKs and pings after it), so a delta over a run is an upper bound of what the daemon
sent: a run that stays under a budget by this measure stays under it for the daemon alone."""

from __future__ import annotations

import time

from tests.plugins.mosquitto import Broker, Collector

SYS_INTERVAL = ["sys_interval 1"]
TOPIC = "$SYS/broker/bytes/received"


class BrokerBytes:
    def __init__(self, broker: Broker) -> None:
        self._c = Collector(broker, TOPIC, qos=0).start()

    def settled(self, quiet_s: float = 3.0, timeout: float = 60.0) -> int:
        """The count once it has not changed for `quiet_s` (a few $SYS ticks) since this call."""
        self._c.wait_topic(TOPIC, 1, timeout=timeout)
        called = time.monotonic()  # what happened just before this call shows at the next tick
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self._c.messages
            value = msgs[-1].text
            since = msgs[-1].at  # when the count first showed its current value
            for m in reversed(msgs):
                if m.text != value:
                    break
                since = m.at
            if time.monotonic() - max(since, called) >= quiet_s:
                return int(value)
            time.sleep(0.2)
        raise AssertionError(f"$SYS bytes/received kept changing for {timeout}s")

    def stop(self) -> None:
        self._c.stop()
