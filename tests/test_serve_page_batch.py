"""The web page's batch view in headless Chromium: several files dropped at once, a sortable results table,
CSV and JSON downloads that match the API, and a player whose position drives the timeline cursor."""

from __future__ import annotations

import csv
import io
import json

import pytest

from helpers import tone, write_audio
from test_serve import CHROMIUM_ARGS, chromium, live_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def _rows(page) -> list[list[str]]:
    return page.eval_on_selector_all("#results-body tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")


def test_batch_table_sort_downloads_and_player(chromium, live_server, tmp_path):  # noqa: F811
    import httpx
    from playwright.sync_api import sync_playwright

    songs = [write_audio(tmp_path / "a low.wav", tone(12.0, freq=110.0, seed=1)),
             write_audio(tmp_path / "b high.wav", tone(7.0, freq=1760.0, seed=2)),
             write_audio(tmp_path / "c mid.wav", tone(9.0, freq=440.0, seed=3))]
    junk = tmp_path / "d junk.mp3"
    junk.write_bytes(b"not audio " * 300)
    expected = {s.name: httpx.post(f"{live_server}/api/predict?segments=true",
                                   files={"file": (s.name, s.read_bytes())}).json() for s in songs}
    problems: list[str] = []
    shot = tmp_path / "batch.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1600}, accept_downloads=True)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("request", lambda r: None if r.url.startswith((live_server, "data:", "blob:" + live_server))
                    else problems.append(f"external request: {r.url}"))
            page.goto(live_server + "/")
            page.locator("#limits", has_text="MB").wait_for()
            page.set_input_files("#file-input", [str(s) for s in songs] + [str(junk)])
            page.locator("#results-body tr.row-done").nth(2).wait_for(timeout=90_000)
            page.locator("#results-body tr.row-error").wait_for(timeout=30_000)
            page.locator("#status", has_text="").wait_for()
            msg = f"screenshot: {shot}"

            rows = _rows(page)
            assert [r[0] for r in rows] == [s.name for s in songs] + [junk.name], msg  # upload order
            for r in rows[:3]:
                e = expected[r[0]]
                assert r[1] == e["genre"] and r[2] == f"{100 * e['scores'][e['genre']]:.1f}%", (r, msg)
            assert "not an audio file" in rows[3][5] and "junk" in page.text_content("#error"), msg
            assert page.is_visible("#result") and page.text_content("#genre") == expected[songs[0].name]["genre"]

            # sorting: confidence descending, then ascending; file names ascending
            page.click("th button[data-key=confidence]")
            conf = [float(r[2].rstrip("%")) for r in _rows(page) if r[2]]
            assert conf == sorted(conf, reverse=True), msg
            assert page.get_attribute("th:has(button[data-key=confidence])", "aria-sort") == "descending"
            page.click("th button[data-key=confidence]")
            conf = [float(r[2].rstrip("%")) for r in _rows(page) if r[2]]
            assert conf == sorted(conf), msg
            page.click("th button[data-key=name]")
            assert [r[0] for r in _rows(page)] == sorted(r[0] for r in rows)

            # downloads
            with page.expect_download() as dl:
                page.click("#download-csv")
            table = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
            assert [t["file"] for t in table] == [s.name for s in songs] + [junk.name]
            for t in table[:3]:
                e = expected[t["file"]]
                assert t["genre"] == e["genre"]
                assert all(abs(float(t[g]) - e["scores"][g]) < 1e-6 for g in e["scores"])
            assert table[3]["genre"] == "" and "not an audio file" in table[3]["error"]
            with page.expect_download() as dl:
                page.click("#download-json")
            recs = json.loads(open(dl.value.path(), encoding="utf-8").read())
            assert [r["genre"] for r in recs[:3]] == [expected[s.name]["genre"] for s in songs]
            assert recs[0]["segments"] == expected[songs[0].name]["segments"] and "spectrogram" not in recs[0]
            assert recs[3]["genre"] is None and recs[3]["error"]

            # the player follows the timeline: open the 12 s track, seek, and the cursor and segment follow
            page.click(f"#results-body tr:has(td:text-is('{songs[0].name}'))")
            assert page.get_attribute("#player", "src").startswith("blob:")
            page.locator("#player").evaluate("p => new Promise(r => p.readyState >= 1 ? r() : p.onloadedmetadata = r)")
            segs = expected[songs[0].name]["segments"]
            total = expected[songs[0].name]["duration_s"]
            for t in (1.0, 7.5, 11.0):
                page.locator("#player").evaluate(f"p => new Promise(r => {{ p.onseeked = r; p.currentTime = {t}; }})")
                box = page.locator("#timeline-box")
                page.wait_for_timeout(50)
                want = next(i for i, s in enumerate(segs) if s["start"] <= t < s["end"] or i == len(segs) - 1)
                assert abs(float(box.get_attribute("data-position")) - t) < 0.05, msg
                assert box.get_attribute("data-segment") == str(want), msg
                assert page.locator("#timeline .seg.now").get_attribute("data-index") == str(want)
                left = float(page.locator("#cursor").evaluate("c => parseFloat(c.style.left)"))
                assert abs(left - 100 * t / total) < 0.5, (left, t, msg)
            # a click on the timeline seeks there
            bb = page.locator("#timeline").bounding_box()
            page.mouse.click(bb["x"] + 0.25 * bb["width"], bb["y"] + bb["height"] / 2)
            page.wait_for_timeout(100)
            pos = float(page.locator("#player").evaluate("p => p.currentTime"))
            assert abs(pos - 0.25 * total) < 0.6, (pos, msg)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    problems = [x for x in problems if "status of 415" not in x]
    assert problems == [], f"{problems}; screenshot: {shot}"


def test_similar_in_this_library_panel(chromium, tiny_model, tmp_path):  # noqa: F811
    """With a library, the detail view lists the library's tracks nearest to the upload."""
    import socket
    import threading
    import time

    import uvicorn
    from playwright.sync_api import sync_playwright

    from genrekit.library import similar
    from genrekit.serve import create_app
    from test_library_similar import two_kinds

    lib = two_kinds(tmp_path / "lib")
    index, _ = similar.update_index(lib, index_dir=tmp_path / "ix", progress=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(tiny_model, library=index, library_root=lib), log_level="warning"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url + "/")
                page.locator("#limits", has_text="MB").wait_for()
                page.set_input_files("#file-input", str(lib / "noise2.flac"))
                page.locator("#similar-box:not([hidden]) #similar li").nth(2).wait_for(timeout=60_000)
                items = page.eval_on_selector_all("#similar li .file", "xs => xs.map(x => x.textContent)")
                assert len(items) == 7 and "noise2.flac" not in items  # the other 7 tracks, itself left out
                assert all(x.startswith("noise") for x in items[:3]), items
            finally:
                browser.close()
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()
