"""The dashboard in a real headless Chromium (Debian `chromium` + `chromium-driver`, Selenium).

Set FACESTREAM_SCREENSHOT_TO=docs/dashboard.png to also refresh the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import MARKS, ServerThread, chromium, wait_for

from streamer.config import AppConfig, EnhanceConfig, OutputConfig, ServerConfig, SourceConfig
from streamer.server import RunningServer

pytestmark = MARKS


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    cfg = AppConfig(
        sources=(
            SourceConfig(uri="demo", name="lobby", demo_width=640, demo_height=360, demo_fps=15.0),
            SourceConfig(
                uri="demo", name="gate", demo_width=640, demo_height=360, demo_fps=15.0, demo_seed=7
            ),
        ),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=2),
        server=ServerConfig(port=0),
    )
    thread = ServerThread(cfg)
    assert thread.server is not None
    yield thread.server
    thread.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    drv = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield drv
    drv.quit()


VIDEO_STATE = """
return [...document.querySelectorAll('section.card')].map(card => ({
  name: card.querySelector('.cam-name').textContent,
  enh: [card.querySelector('video.v-enh').videoWidth, card.querySelector('video.v-enh').currentTime],
  orig: [card.querySelector('video.v-orig').videoWidth, card.querySelector('video.v-orig').currentTime],
  fps: card.querySelector('.s-fps').textContent,
  backend: card.querySelector('.s-backend').textContent,
  faces: card.querySelectorAll('.gallery figure').length,
}));
"""


def test_page_without_token_is_refused(server: RunningServer, driver) -> None:  # type: ignore[no-untyped-def]
    driver.get(server.base_url + "/")
    assert "401" in driver.find_element("tag name", "body").text
    assert not driver.find_elements("css selector", "video")
    driver.get(server.base_url + "/?token=wrong")
    assert "401" in driver.find_element("tag name", "body").text


def test_dashboard_plays_both_cameras_and_controls_apply(  # type: ignore[no-untyped-def]
    server: RunningServer, driver, tmp_path: Path
) -> None:
    driver.get(server.url)
    states = wait_for(
        lambda: (
            (s := driver.execute_script(VIDEO_STATE))
            and len(s) == 2
            and all(c["enh"][0] > 0 and c["orig"][0] > 0 for c in s)
            and s
        )
    )
    assert states, driver.execute_script(VIDEO_STATE)
    assert {c["name"] for c in states} == {"lobby", "gate"}
    assert all(c["enh"][0] == 1280 and c["orig"][0] == 640 for c in states), states
    time.sleep(2.0)
    later = {c["name"]: c for c in driver.execute_script(VIDEO_STATE)}
    for c in states:  # currentTime advances: the videos are playing, not frozen on a frame
        assert later[c["name"]]["enh"][1] > c["enh"][1] and later[c["name"]]["orig"][1] > c["orig"][1]
    assert wait_for(
        lambda: all(
            c["fps"] not in ("–", "") and c["backend"] == "bicubic"
            for c in driver.execute_script(VIDEO_STATE)
        ),
        30,
    )
    wait_for(lambda: all(c["faces"] > 0 for c in driver.execute_script(VIDEO_STATE)), 20)
    time.sleep(1.5)  # let the stats line fill (bitrate, latency need two polls)

    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    target = os.environ.get("FACESTREAM_SCREENSHOT_TO")
    if target:
        shutil.copyfile(shot, target)

    # Output mode from the page's select -> POST /controls -> the pipeline -> the video's size.
    from selenium.webdriver.support.ui import Select

    card = driver.find_elements("css selector", "section.card")[0]
    name = card.find_element("css selector", ".cam-name").text
    Select(card.find_element("css selector", ".c-mode")).select_by_value("inset")
    assert wait_for(lambda: card.find_element("css selector", ".c-msg").text == "applied", 20)
    assert wait_for(lambda: server.state.cameras[name].processor.controls["mode"] == "inset", 30)
    assert wait_for(
        lambda: driver.execute_script("return document.querySelectorAll('video.v-enh')[0].videoWidth") == 640,
        60,
    )
    Select(card.find_element("css selector", ".c-mode")).select_by_value("upscale")
    assert wait_for(lambda: server.state.cameras[name].processor.controls["mode"] == "upscale", 30)

    # The view toggle hides the original layer in "enhanced" view.
    card.find_element("css selector", "button[data-view='enhanced']").click()
    hidden = driver.execute_script(
        "return getComputedStyle(document.querySelectorAll('video.v-orig')[0]).visibility"
    )
    assert hidden == "hidden"


def test_h264_plays_in_chromium(driver) -> None:  # type: ignore[no-untyped-def]
    """The H.264 setting negotiates with a real browser, not only with aiortc."""
    cfg = AppConfig(
        sources=(SourceConfig(uri="demo", name="dock", demo_width=640, demo_height=360, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=1),
        server=ServerConfig(port=0, codec="h264"),
    )
    thread = ServerThread(cfg)
    assert thread.server is not None
    try:
        driver.get(thread.server.url)
        playing = wait_for(
            lambda: (
                (s := driver.execute_script(VIDEO_STATE)) and s[0]["enh"][0] == 640 and s[0]["enh"][1] > 0.5
            )
        )
        assert playing, driver.execute_script(VIDEO_STATE)
        codecs = driver.execute_script(
            """return window.facestream.cams.get('dock').pc.getStats().then(r => {
                 const out = [];
                 r.forEach(s => { if (s.type === 'codec') out.push(s.mimeType); });
                 return out; });"""
        )
        assert codecs and all(c.lower() == "video/h264" for c in codecs), codecs
    finally:
        thread.stop()


def test_a_camera_that_is_down_says_so_on_its_card(driver) -> None:  # type: ignore[no-untyped-def]
    """The card of a camera whose source cannot connect shows the state, attempt and error the
    server reports, and an fps of 0, while the other camera plays."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg = AppConfig(
        sources=(
            SourceConfig(uri="demo", name="yard", demo_width=320, demo_height=180, demo_fps=15.0),
            SourceConfig(
                uri=f"rtsp://127.0.0.1:{closed}/live",
                name="door",
                retry_at_start=True,
                open_timeout_s=1.0,
                reconnect_initial_s=0.2,
                reconnect_max_s=0.5,
            ),
        ),
        enhance=EnhanceConfig(engine="bicubic"),
        server=ServerConfig(port=0),
    )
    thread = ServerThread(cfg)
    assert thread.server is not None
    card_state = """
    return [...document.querySelectorAll('section.card')].map(card => ({
      name: card.querySelector('.cam-name').textContent,
      down: card.classList.contains('down'),
      state: card.querySelector('.cam-state').textContent,
      fps: card.querySelector('.s-fps').textContent,
    }));
    """
    try:
        driver.get(thread.server.url)

        def door_shown() -> object:
            cards = {c["name"]: c for c in driver.execute_script(card_state)}
            door = cards.get("door")
            return door and door["down"] and "attempt" in door["state"] and "yard" in cards and cards

        cards = wait_for(door_shown, 30)
        assert cards, driver.execute_script(card_state)
        assert cards["door"]["state"].startswith("connecting (attempt ")
        assert "Connection refused" in cards["door"]["state"] and cards["door"]["fps"] == "0.0"
        assert wait_for(
            lambda: not {c["name"]: c for c in driver.execute_script(card_state)}["yard"]["down"], 30
        )
    finally:
        thread.stop()


RECEIVED = "return window.facestream.cams.get(arguments[0])?.received[arguments[1]] || null;"


def received(driver, camera: str, kind: str) -> dict | None:  # type: ignore[no-untyped-def]
    """What the page read from getStats() for one track (app.js pollStats)."""
    return driver.execute_script(RECEIVED, camera, kind)  # type: ignore[no-any-return]


def test_chromium_reports_the_frames_it_decodes(server: RunningServer, driver) -> None:  # type: ignore[no-untyped-def]
    """The page's getStats() figures: framesDecoded advances, the decode rate is above 0 and the
    card's "fps shown" is that rate (a functional check; speed is `bench latency --browser`)."""
    driver.get(server.url)
    first = wait_for(lambda: (r := received(driver, "lobby", "enhanced")) and r["framesDecoded"] > 0 and r)
    assert first, driver.execute_script("return [...window.facestream.cams.keys()]")
    time.sleep(3.0)
    later = received(driver, "lobby", "enhanced")
    assert later is not None and later["framesDecoded"] > first["framesDecoded"] + 5, (first, later)
    assert later["fps"] is not None and later["fps"] > 0 and later["framesDropped"] >= 0, later
    assert later["jitterMs"] is not None and later["decodeMs"] is not None, later
    shown = driver.execute_script(
        "return [...document.querySelectorAll('section.card .s-rx')].map(b => b.textContent);"
    )
    assert all(float(s) > 0 for s in shown), shown


def _metric(server: RunningServer, name: str, **labels: str) -> float | None:
    """One sample of the server's /metrics, read over HTTP with the token."""
    import urllib.request

    request = urllib.request.Request(
        server.base_url + "/metrics", headers={"Authorization": f"Bearer {server.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _post(server: RunningServer, path: str, body: object) -> int:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        server.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_original_is_encoded_only_while_the_view_shows_it(driver) -> None:  # type: ignore[no-untyped-def]
    """Enhanced view: the server stops sending and encoding the camera's original (its
    facestream_track_encoding gauge falls to 0, Chromium decodes no more original frames);
    Split brings it back on a keyframe, so the original plays again."""
    cfg = AppConfig(
        sources=(SourceConfig(uri="demo", name="hall", demo_width=640, demo_height=360, demo_fps=15.0),),
        enhance=EnhanceConfig(engine="bicubic"),
        output=OutputConfig(mode="upscale", upscale=1),
        server=ServerConfig(port=0),
    )
    thread = ServerThread(cfg)
    srv = thread.server
    assert srv is not None
    tracks = srv.state.tracks["hall"]

    def encoding(kind: str) -> float | None:
        return _metric(srv, "facestream_track_encoding", camera="hall", track=kind)

    def decoded(kind: str) -> int:
        r = received(driver, "hall", kind)
        return int(r["framesDecoded"]) if r else 0

    try:
        driver.get(srv.url)
        assert wait_for(lambda: decoded("original") > 10 and decoded("enhanced") > 10, 60)
        assert encoding("original") == 1.0 and encoding("enhanced") == 1.0

        driver.find_element("css selector", "button[data-view='enhanced']").click()
        assert wait_for(lambda: encoding("original") == 0.0, 20), encoding("original")
        assert not tracks.encoding("original") and tracks.encoding("enhanced")
        time.sleep(1.5)  # frames already sent, and the page's figures (polled every 0.5 s), settle
        paused_at = decoded("original")
        enhanced_at = decoded("enhanced")
        time.sleep(2.0)
        assert decoded("original") <= paused_at + 1, (paused_at, decoded("original"))
        assert decoded("enhanced") > enhanced_at + 5
        assert encoding("enhanced") == 1.0

        driver.find_element("css selector", "button[data-view='split']").click()
        assert wait_for(lambda: encoding("original") == 1.0, 20)
        assert wait_for(lambda: decoded("original") > paused_at + 10, 30), (paused_at, decoded("original"))

        # The route checks what it is sent: 404 for a peer it does not know, 400 for bad tracks.
        peer = driver.execute_script("return window.facestream.cams.get('hall').peer")
        assert isinstance(peer, str) and len(peer) >= 16
        url = "/api/cameras/hall/watch"
        assert _post(srv, url, {"peer": "nope", "tracks": ["enhanced"]}) == 404
        assert _post(srv, "/api/cameras/nope/watch", {"peer": peer, "tracks": []}) == 404
        assert _post(srv, url, {"peer": peer, "tracks": ["sideways"]}) == 400
        assert _post(srv, url, {"peer": peer, "tracks": "enhanced"}) == 400
        assert _post(srv, url, {"peer": peer, "tracks": ["enhanced", "enhanced"]}) == 400
        assert _post(srv, url, ["not", "an", "object"]) == 400
        assert _post(srv, url, {"peer": peer, "tracks": ["enhanced", "original"]}) == 200
    finally:
        thread.stop()
