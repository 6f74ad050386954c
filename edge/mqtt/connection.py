"""The one place that turns `MqttSettings` into a configured paho client.

The daemon's reconnecting client, `edge doctor`'s broker check and `edge bench`'s observer all talk
to the same broker with the same protocol, transport, TLS and credentials. Building the paho client
here keeps them from drifting apart (a TLS option or the `mqtt_password` systemd credential honoured
by one and forgotten by another) and keeps paho itself inside `edge.mqtt`: callers elsewhere get the
client and message types from this module, never from paho.

What each caller adds on top is its own policy: the daemon its will, logger, backoff and callbacks;
doctor a synchronous connect; bench its subscriptions.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.config.settings import MqttSettings
from edge.core.errors import ConfigError

# paho's types under our names, for callers outside edge.mqtt (callbacks, annotations).
Client = paho.Client
Message = paho.MQTTMessage
MessageInfo = paho.MQTTMessageInfo

CREDENTIAL = "mqtt_password"  # systemd credential (LoadCredential=mqtt_password:...) holding the password


def cannot_resolve(host: str, err: socket.gaierror) -> str:
    """The words for a broker name that does not resolve: `edge run` and `edge doctor` say the same."""
    return f"cannot resolve {host!r} ({err.strerror})"


def resolve_error(host: str, port: int) -> str | None:
    """cannot_resolve's words if `host` does not resolve now, else None (a DNS lookup: call it rarely)."""
    try:
        socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as err:
        return cannot_resolve(host, err)
    except (OSError, UnicodeError):
        return None
    return None


def read_credential(name: str) -> str | None:
    """A systemd credential ($CREDENTIALS_DIRECTORY/name), without its trailing newline."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / name
    try:
        return path.read_text().rstrip("\r\n")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError([f"mqtt.password: cannot read credential {path}: {err.strerror}"]) from None


def password(settings: MqttSettings) -> str | None:
    """The configured password (unless empty), else the `mqtt_password` credential; read when a
    client is built, never cached, so a rotated credential takes effect on the next connection."""
    if settings.password:
        return settings.password.get_secret_value()
    return read_credential(CREDENTIAL)


def is_loopback(host: str) -> bool:
    """Plain TCP is only acceptable to this host: callers warn about anything else."""
    if host in ("localhost", "localhost.localdomain") or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """TLS with hostname checks on; `insecure` turns verification off (the caller says so)."""
    tls = settings.tls
    if tls is None:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError([f"mqtt.tls.ca: cannot load {tls.ca}: {err}"]) from None
    if tls.cert is not None:
        key_password = tls.key_password.get_secret_value() if tls.key_password else None
        try:
            ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None, password=key_password)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError([f"mqtt.tls.cert/key: cannot load {tls.cert}: {err}"]) from None
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# The MQTT 5 features a 3.1.1 connection goes without, in the words `state` and the log use. Shared
# subscriptions are a broker extension under 3.1.1 (mosquitto accepts `$share/`, NATS and RabbitMQ do not).
V311_LACKS = ("response topics", "message expiry", "user properties", "shared subscriptions on some brokers")

# CONNACK codes meaning "I do not speak this protocol version": MQTT 5's 0x84, and 3.1.1's return
# code 1 (a 3.1.1-only broker may answer an MQTT 5 CONNECT in its own format).
_UNSUPPORTED_PROTOCOL = (132, 1)

# A broker that closes the connection this many times in a row without answering an MQTT 5 CONNECT
# (RabbitMQ 3.10 does, instead of a CONNACK) is taken not to speak MQTT 5. Two, not one: a single
# close can be a broker restarting, and the fallback lasts for the life of the process.
SILENT_CLOSES = 2


def wants_v5(settings: MqttSettings) -> bool:
    """The protocol the first CONNECT uses: MQTT 5 unless 3.1.1 is pinned ("auto" starts at 5)."""
    return settings.protocol != "3.1.1"


def refused_protocol(code: int) -> bool:
    """A CONNACK code (MQTT 5 reason or 3.1.1 return code) that says the protocol version is the problem."""
    return code in _UNSUPPORTED_PROTOCOL


def downgrade_to_v311(client: paho.Client, *, clean_session: bool = True) -> None:
    """Make an MQTT 5 client's next CONNECT an MQTT 3.1.1 one, in place.

    In place, not a new client: messages paho already holds (QoS 1 publishes queued while
    disconnected), callbacks and per-topic handlers stay where they are. paho switches `_protocol`
    itself the same way when it downgrades 3.1.1 to 3.1; the MQTT 5-only parts of the CONNECT (its
    properties, the will's properties, clean_start) are dropped, and PUBLISH properties are not
    encoded under 3.1.1 at all.
    """
    client._protocol = paho.MQTTv311
    client._clean_session = clean_session
    client._connect_properties = None
    client._will_properties = None
    client._clean_start = paho.MQTT_CLEAN_START_FIRST_ONLY


def new_client(settings: MqttSettings, client_id: str, *, clean_session: bool = True) -> paho.Client:
    """A paho client with protocol, transport, TLS and credentials set; not connected.

    Raises ConfigError when a TLS file or the credential cannot be read. Each caller passes its own
    `client_id`: two connections with one id make the broker drop the older one. `clean_session`
    is MQTT 3.1.1's (a persistent session is False); MQTT 5 sets clean_start on connect instead.
    `protocol = "auto"` builds an MQTT 5 client; its owner downgrades it (`downgrade_to_v311`).
    """
    v5 = wants_v5(settings)
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        transport=settings.transport,
        clean_session=None if v5 else clean_session,
    )
    if settings.transport == "websockets":
        client.ws_set_options(path=settings.ws_path)
    ctx = build_tls_context(settings)
    if ctx is not None:
        client.tls_set_context(ctx)
    if settings.username:
        client.username_pw_set(settings.username, password(settings))
    return client
