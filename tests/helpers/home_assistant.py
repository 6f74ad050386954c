"""A real Home Assistant for tests: installed once into its own cached venv, started on 127.0.0.1,
onboarded over REST, with the MQTT integration added through its own config flow.

Home Assistant runs on the image's Python 3.13.0 (pyenv), never in the project's venv: 2025.4.4 is
the newest release that runs there (2025.5 needs Python >= 3.13.2). The venv is cached under
`${EDGE_TEST_CACHE:-/var/cache/edge-tests}/home-assistant-<version>/`, built in a temporary folder
beside it and renamed into place under a lock (two processes racing build it once), and rebuilt when
missing or when the recipe below changes. Home Assistant is started with `--skip-pip`: everything the
used integrations need is in the venv, so a run never changes the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HA_VERSION = "2025.4.4"
PYTHON_VERSION = "3.13.0"
# paho-mqtt for the MQTT integration, the frontend for onboarding (both pinned by HA 2025.4.4's
# manifests; HA would pip-install them at its first start, which --skip-pip turns off).
REQUIREMENTS = (f"homeassistant=={HA_VERSION}", "paho-mqtt==2.1.0", "home-assistant-frontend==20250411.0")
RECIPE = json.dumps({"python": PYTHON_VERSION, "requirements": REQUIREMENTS, "rev": 1})
RECIPE_HASH = hashlib.sha256(RECIPE.encode()).hexdigest()[:16]
WS_SCRIPT = Path(__file__).with_name("ha_ws.py")
CLIENT_ID = "http://127.0.0.1/"  # onboarding and the auth code need one; any URL will do
USER = ("edge-test", "edge-test-password-1")

T = TypeVar("T")

# What HA logs about this rig itself, on every start: the camera integration's optional JPEG library,
# aiohttp's optional zlib, and `--skip-pip`.
RIG_NOISE = (
    "Error loading libturbojpeg",
    "zlib_ng and isal are not available",
    "Skipping pip installation of required modules",
)


def cache_root() -> Path:
    return Path(os.environ.get("EDGE_TEST_CACHE", "/var/cache/edge-tests"))


def base_python() -> Path:
    """The image's Python 3.13.0 (pyenv), which Home Assistant 2025.4 needs."""
    root = os.environ.get("PYENV_ROOT")
    if not root:
        try:
            root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            root = str(Path.home() / ".pyenv")
    return Path(root) / "versions" / PYTHON_VERSION / "bin" / f"python{PYTHON_VERSION.rsplit('.', 1)[0]}"


@dataclass(frozen=True)
class Install:
    directory: Path
    built_s: float | None  # seconds this call spent building; None: the cache was there

    @property
    def python(self) -> Path:
        return self.directory / "venv" / "bin" / "python"


def ensure_installed(log: Callable[[str], None] = lambda line: None) -> Install:
    """The cached Home Assistant venv, built now if missing or from another recipe."""
    target = cache_root() / f"home-assistant-{HA_VERSION}"
    stamp = target / "recipe.sha"

    def ready() -> bool:
        return stamp.is_file() and stamp.read_text().strip() == RECIPE_HASH

    if ready():
        return Install(target, None)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"home-assistant-{HA_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a racing process builds; this one waits and reuses it
        if ready():
            return Install(target, None)
        python = base_python()
        if not python.exists():
            raise FileNotFoundError(f"Home Assistant {HA_VERSION} needs Python {PYTHON_VERSION} at {python}")
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"home-assistant-{HA_VERSION}.tmp-"))
        try:
            log(f"building Home Assistant {HA_VERSION} in {tmp}")
            subprocess.run([str(python), "-m", "venv", str(tmp / "venv")], check=True)
            pip = [
                str(tmp / "venv" / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
            ]
            subprocess.run([*pip, *REQUIREMENTS], check=True, stdout=subprocess.DEVNULL)
            # The venv works from any folder when run as `venv/bin/python -m ...` (its scripts' #! lines
            # name the temporary folder, so none is used).
            subprocess.run([str(tmp / "venv" / "bin" / "python"), "-c", "import homeassistant"], check=True)
            (tmp / "recipe.json").write_text(RECIPE)
            (tmp / "recipe.sha").write_text(RECIPE_HASH)
            if target.exists():
                old = target.with_name(f"{target.name}.old-{os.getpid()}")
                target.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Install(target, time.monotonic() - t0)


CONFIGURATION = """\
homeassistant:
  name: edge-test
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: info
  logs:
    homeassistant.components.mqtt: debug
"""


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (OSError, ValueError, urllib.error.URLError) as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(every)


@dataclass
class HomeAssistant:
    """One Home Assistant process on 127.0.0.1:`port` with its config in `directory`."""

    install: Install
    directory: Path
    port: int
    token: str | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _earlier_logs: str = ""
    starts: list[float] = field(default_factory=list)  # seconds each start took until RUNNING

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "home-assistant.log"

    def log_text(self) -> str:
        """Everything HA logged in this test run (it moves its log aside at each start)."""
        try:
            return self._earlier_logs + self.log_path.read_text(errors="replace")
        except OSError:
            return self._earlier_logs

    # ---- process

    def start(self, timeout: float = 240.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "configuration.yaml"
        if not conf.exists():
            conf.write_text(CONFIGURATION.format(port=self.port))
        self._earlier_logs = self.log_text()
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            [str(self.install.python), "-m", "homeassistant", "--config", str(self.directory), "--skip-pip"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "stderr.log").open("ab"),
            cwd=self.directory,
        )

        def up() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise AssertionError(
                    f"Home Assistant exited with {self._proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            if self.token is None:  # before onboarding: the onboarding view answers without auth
                return self._request("GET", "/api/onboarding", auth=False) is not None
            return self.rest("GET", "/api/config").get("state") == "RUNNING"

        wait_until("Home Assistant to answer", up, timeout, every=0.5)
        self.starts.append(time.monotonic() - t0)

    def stop(self, timeout: float = 60.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # ---- HTTP

    def _request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True, form: bool = False
    ) -> Any:
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        return self._request(method, path, body)

    def ws(self, *commands: dict[str, Any]) -> list[Any]:
        assert self.token, "onboard() first"
        out = subprocess.run(
            [str(self.install.python), str(WS_SCRIPT), self.url, self.token, json.dumps(list(commands))],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode:
            raise AssertionError(f"websocket call failed: {out.stderr[-2000:]}")
        result: list[Any] = json.loads(out.stdout)
        return result

    # ---- setup

    def onboard(self) -> None:
        """The owner account, a token, a long-lived token, the remaining onboarding steps."""
        name, password = USER
        created = self._request(
            "POST",
            "/api/onboarding/users",
            {"client_id": CLIENT_ID, "name": name, "username": name, "password": password, "language": "en"},
            auth=False,
        )
        grant = self._request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": created["auth_code"], "client_id": CLIENT_ID},
            auth=False,
            form=True,
        )
        self.token = grant["access_token"]
        (long_lived,) = self.ws(
            {"type": "auth/long_lived_access_token", "client_name": "edge-tests", "lifespan": 30}
        )
        self.token = long_lived
        # Not the `core_config` step: it adds integrations (weather, radio, text-to-speech) whose
        # packages are not installed, and their errors would hide ours in the log.
        self.rest("POST", "/api/onboarding/analytics", {})

    def add_mqtt(self, host: str, port: int) -> dict[str, Any]:
        """The MQTT integration, through the same config flow the UI runs."""
        flow = self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("step_id") != "broker":
            raise AssertionError(f"unexpected MQTT config flow step: {flow}")
        done: dict[str, Any] = self.rest(
            "POST", f"/api/config/config_entries/flow/{flow['flow_id']}", {"broker": host, "port": port}
        )
        if done.get("type") != "create_entry":
            raise AssertionError(f"MQTT config flow did not create an entry: {done}")
        return done

    # ---- reading

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.rest("GET", "/api/states")}

    def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.rest("GET", f"/api/states/{entity_id}")
            return result
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def device_entities(self, identifier: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The registry entry of the device with `identifier`, and its entities (registry entries)."""
        devices, entities = self.ws(
            {"type": "config/device_registry/list"}, {"type": "config/entity_registry/list"}
        )
        device = next((d for d in devices if any(identifier in i for i in d["identifiers"])), None)
        if device is None:
            return None, []
        return device, [e for e in entities if e["device_id"] == device["id"]]

    def log_lines(self) -> int:
        return len(self.log_text().splitlines())

    def problems(self, since: int = 0) -> list[str]:
        """Warnings and errors in HA's log after line `since`, less what this rig causes itself."""
        lines = self.log_text().splitlines()[since:]
        return [
            line
            for line in lines
            if (" WARNING " in line or " ERROR " in line) and not any(n in line for n in RIG_NOISE)
        ]


@contextlib.contextmanager
def running(install: Install, directory: Path, port: int) -> Iterator[HomeAssistant]:
    ha = HomeAssistant(install, directory, port)
    try:
        ha.start()
        yield ha
    finally:
        ha.stop()
        if sys.exc_info()[0] is not None:
            sys.stderr.write(ha.log_text()[-5000:])
