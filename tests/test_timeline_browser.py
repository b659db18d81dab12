"""The face timeline page in a real headless Chromium, on a server whose two demo cameras run the
real pipeline with the trained FSR engine: browse by camera, open a face with its original
beside it, select faces and download them as a zip.

Set FACESTREAM_TIMELINE_SCREENSHOT_TO=docs/timeline.png to refresh the docs' screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import MARKS, ServerThread, chromium, wait_for

from streamer.config import AppConfig, ServerConfig, SourceConfig, StorageConfig
from streamer.server import RunningServer
from streamer.server.timeline_api import TIMELINE

pytestmark = MARKS

SHOTS_LOADED = """
const imgs = [...document.querySelectorAll('.shot img')];
return imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0) ? imgs.length : 0;
"""
"""Every listed image has loaded: a face that a live track replaced by a better one since the page
listed it is still served for a while (REPLACED_KEEP_S)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    cfg = AppConfig(
        sources=(
            SourceConfig(uri="demo", name="lobby", demo_width=640, demo_height=360, demo_fps=10.0),
            SourceConfig(
                uri="demo", name="gate", demo_width=640, demo_height=360, demo_fps=10.0, demo_seed=7
            ),
        ),
        server=ServerConfig(port=0),
        storage=StorageConfig(data_dir=str(tmp_path_factory.mktemp("timeline")), min_free_mb=0),
    )
    thread = ServerThread(cfg)
    assert thread.server is not None
    timeline = thread.server.runner.app[TIMELINE]
    cameras = wait_for(
        lambda: len(timeline.query()["cameras"]) == 2 and len(timeline.query()["items"]) >= 4, 120
    )
    assert cameras, timeline.query()
    yield thread.server
    thread.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory, downloads: Path) -> Iterator[object]:
    drv = chromium(tmp_path_factory.mktemp("chromium-profile"), downloads)
    yield drv
    drv.quit()


def shown_cameras(driver: Any) -> set[str] | None:
    """The cameras of the listed tracks; None while the list is being redrawn under us."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return {c.text for c in driver.find_elements("css selector", ".t-cam")}
    except StaleElementReferenceException:
        return None


def test_timeline_page_browses_compares_and_downloads(  # type: ignore[no-untyped-def]
    server: RunningServer, driver, downloads: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import Select

    driver.get(server.url)  # the live dashboard links to the timeline
    link = wait_for(lambda: driver.find_elements("id", "to-timeline"), 30)
    assert link and "/faces?token=" in link[0].get_attribute("href")
    driver.get(link[0].get_attribute("href"))
    assert wait_for(lambda: driver.execute_script(SHOTS_LOADED), 30)
    options = [o.get_attribute("value") for o in driver.find_elements("css selector", "#f-camera option")]
    assert sorted(options) == ["", "gate", "lobby"]
    badges = driver.find_elements("css selector", ".shot .badge")
    assert badges and all(b.text == "AI-ENHANCED" for b in badges)  # CSS upper-cases the label
    assert "not photographs" in driver.find_element("id", "note").text

    # One camera only.
    Select(driver.find_element("id", "f-camera")).select_by_value("gate")
    driver.find_element("css selector", "#filters button[type=submit]").click()
    assert wait_for(lambda: shown_cameras(driver) == {"gate"} and driver.execute_script(SHOTS_LOADED), 30)
    # A time range that holds nothing.
    driver.execute_script("document.getElementById('f-until').value = '2001-01-01T00:00:00'")
    driver.find_element("css selector", "#filters button[type=submit]").click()
    assert wait_for(lambda: "no faces kept" in driver.find_element("id", "list").text, 30)
    driver.execute_script("document.getElementById('f-until').value = ''")
    Select(driver.find_element("id", "f-camera")).select_by_value("")
    driver.find_element("css selector", "#filters button[type=submit]").click()
    assert wait_for(lambda: len(shown_cameras(driver) or ()) == 2, 30)
    assert wait_for(lambda: driver.execute_script(SHOTS_LOADED), 30)

    # Open a face: the original beside the enhanced one, both loaded, labelled.
    first = driver.find_elements("css selector", ".shot img")[0]
    first.click()
    assert wait_for(
        lambda: driver.execute_script(
            "const o = document.getElementById('v-orig'), e = document.getElementById('v-enh');"
            "return !document.getElementById('viewer').hidden && o.naturalWidth > 0 && e.naturalWidth > 0"
            " && [o.naturalWidth, e.naturalWidth]"
        ),
        30,
    )
    sizes = driver.execute_script(
        "return [document.getElementById('v-orig').naturalWidth,"
        " document.getElementById('v-enh').naturalWidth]"
    )
    assert sizes[1] == 128 and sizes[0] < 128, sizes  # camera pixels vs the 128 px reconstruction
    assert "reconstruction" in driver.find_element("css selector", ".pair .enh figcaption").text
    assert "may be invented" in driver.find_element("id", "v-meta").text
    time.sleep(0.5)
    shot = tmp_path / "timeline.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    target = os.environ.get("FACESTREAM_TIMELINE_SCREENSHOT_TO")
    if target:
        shutil.copyfile(shot, target)
    driver.find_element("id", "v-close").click()
    assert driver.execute_script("return document.getElementById('viewer').hidden")

    # Select two faces and download them.
    boxes = driver.find_elements("css selector", ".shot input[type=checkbox]")[:2]
    for box in boxes:
        box.click()
    assert driver.find_element("id", "sel-count").text == "2 selected"
    chosen = sorted(int(b.find_element("xpath", "..").get_attribute("data-face")) for b in boxes)
    href = driver.find_element("id", "download").get_attribute("href")
    assert f"ids={chosen[0]},{chosen[1]}" in href
    driver.find_element("id", "download").click()
    zips = wait_for(lambda: [p for p in downloads.glob("*.zip")], 90)
    assert zips, list(downloads.iterdir())
    meta = json.loads(zipfile.ZipFile(zips[0]).read("metadata.json"))
    # Both are there even if a live track has replaced one by a better face since the page listed it.
    assert sorted(f["id"] for f in meta["faces"]) == chosen and meta["missing"] == [], meta
    assert all(f["enhanced"] for f in meta["faces"])
