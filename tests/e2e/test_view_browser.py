"""`edge view` in a real browser: Debian's Chromium, headless, driven by Selenium through Debian's
chromedriver, with `edge run` publishing the demo model's captions of two cameras into it, on the
SQLite store and on a real PostgreSQL shared by two views of one shared-subscription group.

What a person would check on the page: each camera's latest caption is there and right for what the
camera shows; the picture beside it is the very picture that result describes (the bytes the daemon
published for that result id); a search for a colour finds the results that name it and no other; a
gap in a device's seqs shows where it is; a killed daemon shows offline. Screenshots of the views are
saved (to $EDGE_TEST_ARTIFACTS when set) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.assets import package_file
from edge.capture import demo_world as S
from edge.core.messages import ModelPayload, ResultPayload, StatsPayload
from edge.imaging.opencv import cv2
from tests.e2e.harness import base_settings, start_daemon, write_config
from tests.plugins.mosquitto import Broker, Collector, free_port

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
GATE = S.Scene((S.Shape("circle", "red", "left"), S.Shape("square", "blue", "right")), 640, 480)
YARD = S.Scene((S.Shape("triangle", "yellow", "center"),), 640, 480)


def picture(folder: Path, scene: S.Scene, seed: int) -> None:
    folder.mkdir()
    image = S.draw(scene, np.random.default_rng(seed), overlay=False, jpeg=False)
    assert cv2.imwrite(str(folder / "a.png"), image)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.3)


def start_view(
    tmp_path: Path, config: Path, store: str, name: str, group: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    args = [sys.executable, "-m", "edge.cli", "view", "--config", str(config), "--store", store,
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    if group:
        args += ["--group", group]
    log = (tmp_path / f"{name}.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True
    )
    wait(lambda: _healthz(port) is not None or proc.poll() is not None, 30, f"{name} to listen")
    assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
    return proc, port


def _healthz(port: int) -> dict[str, Any] | None:
    try:
        return dict(json.loads(get(f"http://127.0.0.1:{port}/healthz")))
    except OSError:
        return None


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail(
            "Debian's chromium and chromium-driver are needed (`make test` installs them: tools/test_deps.sh)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def results_of(sub: Collector) -> dict[str, ResultPayload]:
    found = (ResultPayload.model_validate_json(m.payload) for m in sub.on("edge/+/+/caption/result"))
    return {r.id: r for r in found}


def synthetic(device: str, seq: int, text: str) -> bytes:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 100 + seq))
    return ResultPayload(
        id=f"{device}-1-{seq}", device=device, camera="main", task="caption", seq=seq, captured_at=at,
        published_at=at, trigger="interval", text=text,
        model=ModelPayload(name="m", backend="http", provider="remote"),
        stats=StatsPayload(prompt_tokens=1, image_tokens=0, new_tokens=1, ttft_ms=1, decode_tok_s=1, total_ms=1,
                           stop_reason="eos"),
    ).model_dump_json().encode()  # fmt: skip


@pytest.mark.timeout(420)
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_page_shows_what_the_cameras_saw(
    tmp_path: Path, mosquitto: Broker, browser: Any, engine: str, request: pytest.FixtureRequest
) -> None:
    from selenium.webdriver.common.by import By

    artifacts = Path(os.environ.get("EDGE_TEST_ARTIFACTS") or tmp_path / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    picture(tmp_path / "gate", GATE, 11)
    picture(tmp_path / "yard", YARD, 12)
    cfg = base_settings(
        tmp_path,
        mosquitto,
        model={"path": str(package_file("assets/models/demo-ort")), "max_new_tokens": 40},
        tasks=[
            {
                "name": "caption",
                "kind": "caption",
                "trigger": "interval",
                "interval_s": 1,
                "publish_image": True,
            }
        ],
    )
    del cfg["camera"]
    cfg["cameras"] = [
        {"name": name, "source": str(tmp_path / name), "width": 640, "height": 480, "fps": 2}
        for name in ("gate", "yard")
    ]
    cfg["mqtt"]["keepalive_s"] = 5
    config = write_config(tmp_path / "view.toml", cfg)  # the view reads [mqtt] from the same file

    if engine == "sqlite":
        store = str(tmp_path / "view.db")
        views = [start_view(tmp_path, config, store, "view")]
    else:
        store = request.getfixturevalue("postgres_url")
        views = [start_view(tmp_path, config, store, f"view{i}", group="viewers") for i in (1, 2)]
    port = views[0][1]
    base = f"http://127.0.0.1:{port}"
    sub = Collector(mosquitto, "#", persistent=True).start()
    daemon = start_daemon(tmp_path, cfg)
    try:
        for cam in ("gate", "yard"):
            sub.wait_topic(f"edge/cam-e2e/{cam}/caption/image", count=3, timeout=120)
        browser.get(base + "/")
        for cam in ("gate", "yard"):
            badge = browser.find_element(By.CSS_SELECTOR, f'section[data-camera="{cam}"] .badge')
            assert badge.get_attribute("data-status") == "online"
        browser.save_screenshot(str(artifacts / f"view-overview-{engine}.png"))

        # the daemon killed: what it published is final; a device with a gap in its seqs beside it
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(10)
        for seq, text in ((1, "A green circle on the left."), (2, "A green square."), (5, "A white circle.")):
            sub.publish("edge/fieldcam/main/caption/result", synthetic("fieldcam", seq, text))
        sub.wait_topic("edge/fieldcam/main/caption/result", count=3, timeout=10)

        def everything_stored() -> bool:
            stored = 0
            for _, p in views:
                health = _healthz(p)
                assert health is not None, f"the view on :{p} does not answer"
                stored += health["stored"]
            return stored >= len(results_of(sub))

        wait(everything_stored, 30, "every published result stored")
        published = results_of(sub)
        images = {m.user["id"]: m.payload for m in sub.on("edge/cam-e2e/+/caption/image")}

        # per camera: the latest caption, right for the picture; the picture is that result's own
        browser.get(base + "/")
        for cam, scene in (("gate", GATE), ("yard", YARD)):
            card = browser.find_element(
                By.CSS_SELECTOR, f'section[data-device="cam-e2e"][data-camera="{cam}"]'
            )
            caption = card.find_element(By.CSS_SELECTOR, ".caption")
            assert caption.text == S.caption(scene), (cam, caption.text)
            link = card.find_element(By.CSS_SELECTOR, "a.latest-picture")
            rid = link.get_attribute("data-result")
            assert rid == caption.get_attribute("data-result")
            assert published[rid].camera == cam and published[rid].text == caption.text
            img = link.find_element(By.TAG_NAME, "img")
            assert get(img.get_attribute("src")) == images[rid], (
                "the picture shown is not the one this result describes"
            )
            assert browser.execute_script("return arguments[0].naturalWidth", img) > 0

        # search: a colour finds the results that name it, and no other
        for colour, cam in (("red", "gate"), ("yellow", "yard"), ("green", "main")):
            browser.get(f"{base}/search?q={colour}")
            rows = browser.find_elements(By.CSS_SELECTOR, ".row.result")
            found = {r.get_attribute("data-result") for r in rows}
            want = {i for i, r in published.items() if colour in r.text.lower().replace(".", " ").split()}
            assert found == want and want, (colour, found ^ want)
            assert {r.get_attribute("data-camera") for r in rows} == {cam}
        browser.get(f"{base}/search?q=red")
        browser.save_screenshot(str(artifacts / f"view-search-{engine}.png"))

        # a gap shows where it is: between seq 5 and seq 2 of fieldcam's boot 1
        browser.get(f"{base}/timeline?device=fieldcam")
        rows = browser.find_elements(By.CSS_SELECTOR, ".row")
        marks = [r.get_attribute("data-result") or r.get_attribute("data-gap") for r in rows]
        assert marks == ["fieldcam-1-5", "fieldcam:1:3-4", "fieldcam-1-2", "fieldcam-1-1"], marks
        browser.get(f"{base}/timeline")
        browser.save_screenshot(str(artifacts / f"view-timeline-{engine}.png"))

        # the killed device shows offline (its last will, after the keepalive)
        def offline() -> bool:
            browser.get(base + "/")
            badge = browser.find_element(By.CSS_SELECTOR, 'section[data-camera="gate"] .badge')
            return badge.get_attribute("data-status") == "offline"

        wait(offline, 60, "the killed daemon to show offline")
        browser.save_screenshot(str(artifacts / f"view-offline-{engine}.png"))
    finally:
        if daemon.alive():
            daemon.stop()
        sub.stop()
        for proc, _ in views:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in views:
            try:
                assert proc.wait(20) == 0
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
