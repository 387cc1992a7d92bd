"""Live sources: the bounded ring buffer, a real-time replay with a model too slow to keep
up, a source that fails mid-way and is reopened, a loopback HTTP stream that drops, Ctrl-C."""

from __future__ import annotations

import json
import time

import av
import numpy as np
import pytest

from rsanet.inference import (
    Backoff,
    Frame,
    FrameRing,
    LiveAnalysis,
    Predictor,
    SourceError,
    TorchBackend,
    decode_frames,
    load_classifier,
    parse_source,
    pyav_opener,
)
from support.inference import CLASSES, encode, moving_square, rules_file


class SlowBackend(TorchBackend):
    """The model, plus ``delay`` seconds per clip: slower than real time."""

    def __init__(self, model, delay: float):
        super().__init__(model)
        self.delay, self.calls = delay, 0

    def __call__(self, clip):
        self.calls += 1
        time.sleep(self.delay)
        return super().__call__(clip)


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_classifier(checkpoint).model


def test_ring_drops_the_oldest_frames_beyond_its_span():
    ring = FrameRing(seconds=0.4, max_frames=100)
    image = np.zeros((2, 2, 3), np.uint8)
    dropped = [ring.put(Frame(time=i / 25, image=image)) for i in range(60)]
    assert len(ring) == 10 and ring.high_water == 10  # 0.40 s of 25 fps frames: 10 frames
    assert ring.received == 60 and ring.dropped == 50 and sum(dropped) == 50
    frames = ring.get_all()
    assert [round(f.time * 25) for f in frames] == list(range(50, 60))
    assert ring.get_all(timeout=0.01) == [] and not ring.finished
    counted = FrameRing(seconds=100, max_frames=4)
    for i in range(6):
        counted.put(Frame(time=i, image=image))
    assert len(counted) == 4 and counted.dropped == 2
    counted.close()
    assert len(counted.get_all()) == 4 and counted.finished


def test_live_replay_with_a_slow_model_drops_frames(model, small_clip):
    backend = SlowBackend(model, delay=0.7)
    predictor = Predictor(backend, CLASSES, num_frames=8, size=32, smoothing=1)
    spec = parse_source(str(small_clip))
    analysis = LiveAnalysis(
        predictor,
        pyav_opener(spec, short_side=predictor.short_side),
        window=0.8,
        stride=0.4,
        source=str(spec),
        buffer_seconds=0.4,
        reconnect=False,
    )
    started = time.monotonic()
    results = list(analysis)
    elapsed = time.monotonic() - started
    summary = analysis.summary()
    assert elapsed >= 49 / 25  # replayed at the clip's frame rate
    assert summary.frames == 50  # every frame was decoded ...
    assert summary.dropped_frames > 0  # ... but some never reached the model
    assert analysis.ring.high_water <= 10  # never more than 0.4 s of frames queued
    assert summary.windows == len(results) == backend.calls >= 2
    assert summary.realtime_factor < 1  # 0.4 s stride, > 0.7 s per window
    assert summary.error is None and summary.reconnects == 0
    assert all(r.latency_ms >= 700 for r in results)
    assert [r.index for r in results] == list(range(len(results)))


def test_a_source_failing_mid_way_is_reopened(model, small_clip):
    decoded = list(decode_frames(parse_source(str(small_clip)), short_side=37))
    calls = []

    def opener():
        calls.append(time.monotonic())
        if len(calls) == 1:
            yield from decoded[:30]
            raise ConnectionResetError("camera reset the connection")
        if len(calls) == 2:
            yield from decoded
            return  # the stream ends: a live source is reopened ...
        raise ConnectionRefusedError("camera unreachable")  # ... until the attempts run out

    predictor = Predictor(TorchBackend(model), CLASSES, num_frames=8, size=32, smoothing=1)
    outages = []
    analysis = LiveAnalysis(
        predictor,
        opener,
        window=0.8,
        stride=0.4,
        source="cam",
        buffer_seconds=10,
        backoff=Backoff(initial=0.05),
        max_reconnects=1,
        on_outage=outages.append,
    )
    results = list(analysis)
    summary = analysis.summary()
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.05  # waited before reopening
    assert summary.frames == 80 and summary.dropped_frames == 0
    assert summary.reconnects == 1
    assert [o.state for o in outages] == ["lost", "restored", "lost", "gave_up"]
    first, second = summary.outages
    assert "camera reset the connection" in first.reason and first.end >= first.start
    assert second.gave_up and second.attempts == 1 and "the stream ended" in second.reason
    assert "gave up after 1 reconnection attempt" in summary.error
    by_segment = {0: [], 1: []}
    for result in results:
        by_segment[result.segment].append(result)
    assert by_segment[0] and by_segment[1]  # windows before and after the outage
    assert max(r.end for r in by_segment[0]) <= 30 / 25 + 1e-6  # none straddles it
    assert min(r.start for r in by_segment[1]) >= 30 / 25
    assert all(a.end <= b.end for a, b in zip(results, results[1:], strict=False))


def test_a_source_that_never_delivers_is_an_error(model):
    def opener():
        raise ConnectionRefusedError("nothing at 127.0.0.1:9")
        yield  # pragma: no cover

    predictor = Predictor(TorchBackend(model), CLASSES, num_frames=8, size=32)
    analysis = LiveAnalysis(
        predictor, opener, window=1, stride=1, source="cam", backoff=Backoff(initial=0.01)
    )
    with pytest.raises(SourceError, match="cannot read cam: nothing at 127.0.0.1:9"):
        list(analysis)
    assert not analysis.reader.is_alive()


def test_http_stream_that_drops_is_reopened(cli, checkpoint, http_server, tmp_path):
    ts = encode(tmp_path / "cam.ts", moving_square(50), container="mpegts").read_bytes()
    half = ts[: len(ts) // 2 // 188 * 188]  # the connection drops half-way
    server = http_server([half, ts, None])  # then the full stream, then resets
    result = cli(
        "predict",
        f"{server.url}/cam.ts",
        "--checkpoint",
        checkpoint,
        "--size",
        32,
        "--json",
        "--window-seconds",
        0.8,
        "--stride-seconds",
        0.4,
        "--buffer-seconds",
        60,
        "--max-reconnects",
        1,
        "--reconnect-delay",
        0.05,
    )
    lines = [json.loads(line) for line in result.out.splitlines()]
    summary = lines[-1]
    assert result.code == 1  # the source was finally lost
    assert summary["type"] == "summary" and summary["reconnects"] == 1
    assert 50 < summary["frames"] < 100 and summary["dropped_frames"] == 0
    assert "gave up" in summary["error"]
    states = [x["state"] for x in lines if x["type"] == "outage"]
    assert states == ["lost", "restored", "lost", "gave_up"]
    assert sum(x["type"] == "window" for x in lines) == summary["windows"] >= 2
    assert server.server.requests == 3


def test_a_stalled_stream_is_reopened(model, http_server, tmp_path):
    ts = encode(tmp_path / "cam.ts", moving_square(50), container="mpegts").read_bytes()
    half = ts[: len(ts) // 2 // 188 * 188]
    server = http_server([("stall", half), ts, None])  # data stops, the socket stays open
    spec = parse_source(f"{server.url}/cam.ts")
    predictor = Predictor(TorchBackend(model), CLASSES, num_frames=8, size=32)
    analysis = LiveAnalysis(
        predictor,
        pyav_opener(spec, short_side=predictor.short_side, timeout=(2.0, 0.5)),
        window=0.8,
        stride=0.4,
        source=str(spec),
        buffer_seconds=60,
        backoff=Backoff(initial=0.05),
        max_reconnects=1,
    )
    results = list(analysis)
    summary = analysis.summary()
    stall = summary.outages[0]
    assert "no answer (timed out)" in stall.reason and stall.end is not None
    assert summary.reconnects == 1 and 50 < summary.frames < 100
    assert {r.segment for r in results} == {0, 1}


def test_ctrl_c_ends_cleanly_with_a_summary(cli, checkpoint, small_clip, tmp_path, monkeypatch):
    calls = []
    original = TorchBackend.__call__

    def interrupted(self, clip):
        calls.append(1)
        if len(calls) == 4:  # the warm-up's blank clip, two windows, then Ctrl-C
            raise KeyboardInterrupt
        return original(self, clip)

    monkeypatch.setattr(TorchBackend, "__call__", interrupted)
    out = tmp_path / "annotated.mp4"
    result = cli(
        "predict",
        small_clip,
        "--checkpoint",
        checkpoint,
        "--size",
        32,
        "--live",
        "--json",
        "--window-seconds",
        0.4,
        "--stride-seconds",
        0.4,
        "--annotate",
        out,
    )
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert result.code == 0
    assert [x["type"] for x in lines] == ["window", "window", "summary"]
    assert lines[-1]["interrupted"] is True and lines[-1]["windows"] == 2
    with av.open(str(out)) as container:  # the annotated video was finished properly
        frames = sum(1 for _ in container.decode(video=0))
    assert 10 <= frames < 50


def test_reader_times_continue_across_reconnections():
    image = np.zeros((2, 2, 3), np.uint8)
    calls = []

    def opener():
        calls.append(1)
        if len(calls) > 2:
            return
        for i in range(5):
            yield Frame(time=i / 10, image=image, duration=0.1)

    from rsanet.inference import StreamReader

    ring = FrameRing(seconds=100)
    reader = StreamReader(opener, ring, backoff=Backoff(initial=0.01), max_reconnects=1)
    reader.run()  # in this thread: ends when it gives up
    frames = ring.get_all()
    times = [f.time for f in frames]
    assert len(frames) == 10 and times == sorted(times)
    assert [f.segment for f in frames] == [0] * 5 + [1] * 5
    assert [f.index for f in frames] == list(range(10))
    assert reader.reconnects == 1 and "gave up" in reader.error
    assert frames[5].time >= frames[4].time


def test_backoff_is_capped_at_any_attempt_count():
    backoff = Backoff(initial=0.5)
    assert [backoff.delay(n) for n in (1, 2, 3, 7, 8)] == [0.5, 1, 2, 30, 30]
    for attempt in (1075, 10**6, 10**300):  # 0.5 * 2**1074 overflows a float
        assert backoff.delay(attempt) == 30
    assert Backoff(initial=40).delay(10**9) == 40  # the cap is never below the first delay
    assert Backoff(initial=0.2, factor=1).delay(10**9) == 0.2
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="backoff initial must be positive"):
            Backoff(initial=bad)


class BrokenBackoff(Backoff):
    """A backoff whose computation fails: the reader's own code breaking."""

    def delay(self, attempt: int) -> float:
        raise OverflowError("(34, 'Numerical result out of range')")


def test_a_dead_reader_ends_the_run_with_an_error(model):
    image = np.zeros((40, 40, 3), np.uint8)

    def opener():
        for i in range(30):
            yield Frame(time=i / 25, image=image, duration=0.04)
        raise ConnectionResetError("camera reset the connection")

    predictor = Predictor(TorchBackend(model), CLASSES, num_frames=8, size=32, smoothing=1)
    outages = []
    analysis = LiveAnalysis(
        predictor,
        opener,
        window=0.8,
        stride=0.4,
        source="cam",
        buffer_seconds=10,
        backoff=BrokenBackoff(),
        on_outage=outages.append,
    )
    results = list(analysis)  # ends: the reader is gone, nothing more will come
    summary = analysis.summary()
    assert results and not analysis.reader.is_alive() and analysis.reader.crashed
    assert summary.error.startswith("the stream reader stopped: OverflowError")
    assert [o.state for o in outages] == ["lost", "gave_up"]


def test_cli_a_dead_reader_exits_non_zero(cli, checkpoint, http_server, tmp_path, monkeypatch):
    ts = encode(tmp_path / "cam.ts", moving_square(50), container="mpegts").read_bytes()
    server = http_server([ts[: len(ts) // 2 // 188 * 188], None])
    monkeypatch.setattr(Backoff, "delay", BrokenBackoff.delay)
    result = cli(
        "predict",
        f"{server.url}/cam.ts",
        "--checkpoint",
        checkpoint,
        "--size",
        32,
        "--json",
        "--window-seconds",
        0.8,
        "--buffer-seconds",
        60,
    )
    summary = json.loads(result.out.splitlines()[-1])
    assert result.code == 1
    assert summary["type"] == "summary" and "stream reader stopped" in summary["error"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("--reconnect-delay", "0"),
        ("--reconnect-delay", "-1"),
        ("--reconnect-delay", "nan"),
        ("--reconnect-delay", "inf"),
        ("--timeout", "0"),
        ("--window-seconds", "inf"),
        ("--window-seconds", "1e12"),
        ("--stride-seconds", "-0.5"),
        ("--buffer-seconds", "nan"),
        ("--webhook-timeout", "0"),
        ("--flush-timeout", "inf"),
        ("--size", "1000000"),
        ("--top-k", "inf"),
        ("--max-reconnects", "-1"),
    ],
)
def test_zero_negative_non_finite_and_absurd_values_are_refused(
    cli, checkpoint, small_clip, capsys, option, value
):
    import rsanet.cli

    with pytest.raises(SystemExit) as exit_:
        rsanet.cli.main(
            ["predict", str(small_clip), "--checkpoint", str(checkpoint), option, value]
        )
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"argument {option}:" in err and "Traceback" not in err


def test_sigterm_is_handled_like_ctrl_c(checkpoint, bikes, tmp_path):
    """A supervisor's SIGTERM: the run stops, the annotated video is finished, the event log
    and the summary are written, exit 0."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import rsanet

    rules = rules_file(tmp_path, {"fighting": 0.0})  # every window fires
    out, events = tmp_path / "annotated.mp4", tmp_path / "events.jsonl"
    argv = [
        "predict", str(bikes), "--checkpoint", str(checkpoint), "--size", "32", "--live",
        "--json", "--window-seconds", "0.4", "--stride-seconds", "0.4", "--rules", str(rules),
        "--events", str(events), "--annotate", str(out),
    ]  # fmt: skip
    code = (
        f"import sys, rsanet.cli as c; c.COMMAND_MODULES = ['predict']; sys.exit(c.main({argv!r}))"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(rsanet.__file__).parents[1]), OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        first = process.stdout.readline()  # the first window: the run is under way
        assert json.loads(first)["type"] == "window"
        process.send_signal(signal.SIGTERM)
        rest, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    lines = [json.loads(first)] + [json.loads(x) for x in rest.decode().splitlines()]
    summary = lines[-1]
    assert process.returncode == 0, err.decode()
    assert summary["type"] == "summary" and summary["interrupted"] is True
    assert summary["signal"] == "SIGTERM" and summary["error"] is None
    assert summary["frames"] < 250  # stopped before the end of the 10 s replay
    alerts = [x for x in lines if x["type"] == "alert"]
    logged = [json.loads(x) for x in events.read_text().splitlines()]
    assert alerts and logged == alerts and summary["delivery"]["events"]["written"] == len(alerts)
    with av.open(str(out)) as container:  # finished properly, and put in place
        assert sum(1 for _ in container.decode(video=0)) > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
