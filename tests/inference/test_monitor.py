"""A monitored windowed run, driven directly (no CLI): results reach the printer before the
alert sinks, every ending (the source's end, an error, a bug, a signal) closes the analysis
and the sinks and yields a summary, a signal never cuts a window's delivery in half, and a
folder's summary and the output checks say what ``rsanet predict`` prints."""

from __future__ import annotations

import json
import os
import signal

import pytest

from rsanet.atomic import OverwriteError
from rsanet.inference import (
    AlertEngine,
    AlertRule,
    AlertSinks,
    ClipPrediction,
    EventLog,
    FolderSummary,
    Interrupted,
    Monitor,
    Predictor,
    RunOutcome,
    RunSummary,
    SourceError,
    StopSignals,
    WindowAnalysis,
    check_outputs,
    open_analysis,
    parse_source,
)
from support.inference import CLASSES, window


class FakeAnalysis:
    """Yields ``results``, then raises ``error`` (if any); records that it was closed."""

    def __init__(self, results, error: BaseException | None = None, frames: int = 50) -> None:
        self.results, self.error, self.frames = list(results), error, frames
        self.interrupted = False
        self.closed = False
        self.delivered = 0

    def __iter__(self):
        for result in self.results:
            yield result
            self.delivered += 1
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True

    def summary(self) -> RunSummary:
        return RunSummary(
            source="cam",
            frames=self.frames,
            windows=self.delivered,
            interrupted=self.interrupted,
        )


def alert_sinks(tmp_path, **options) -> AlertSinks:
    return AlertSinks(
        engine=AlertEngine([AlertRule("fighting", 0.5, cooldown=0)], CLASSES),
        events=EventLog(tmp_path / "events.jsonl"),
        **options,
    )


def fighting(count: int) -> list:
    return [window(i, 2.0 + i, 0.9) for i in range(count)]


def test_results_are_printed_before_their_alerts_and_counted_in_the_summary(tmp_path):
    order = []
    sinks = alert_sinks(tmp_path, emit=lambda record, text: order.append(record["type"]))
    analysis = FakeAnalysis(fighting(3))
    outcome = Monitor(sinks).run(analysis, on_result=lambda r: order.append("window"))
    assert order == ["window", "alert"] * 3
    assert analysis.closed and sinks._closed
    summary = outcome.summary
    assert summary.windows == 3 and summary.alerts == 3 and summary.error is None
    assert summary.delivery == {"events": sinks.log.stats()}
    assert summary.delivery["events"]["lost"] == 0 and summary.signal is None
    assert outcome.failure is None and not outcome.bug and not outcome.empty
    assert outcome.exit_code == 0
    logged = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["label"] for line in logged] == ["fighting"] * 3


def test_an_error_ends_the_run_with_a_summary_that_names_it(tmp_path):
    analysis = FakeAnalysis(fighting(2), error=ValueError("the model's scores\nare not finite"))
    outcome = Monitor(alert_sinks(tmp_path)).run(analysis)
    assert analysis.closed and outcome.summary.windows == 2 and outcome.summary.alerts == 2
    assert outcome.summary.error == "the model's scores are not finite"  # one line
    assert isinstance(outcome.failure, ValueError) and not outcome.bug
    assert outcome.exit_code == 1


def test_a_bug_is_kept_for_its_traceback_after_the_summary(tmp_path):
    outcome = Monitor(alert_sinks(tmp_path)).run(FakeAnalysis([], error=KeyError("oops")))
    assert outcome.bug and isinstance(outcome.failure, KeyError)
    assert outcome.summary.error == "'oops'"


def test_a_source_that_never_delivered_a_frame_is_a_plain_error(tmp_path):
    sinks = alert_sinks(tmp_path)
    analysis = FakeAnalysis([], error=SourceError("cannot open rtsp://cam"), frames=0)
    with pytest.raises(SourceError, match="cannot open"):
        Monitor(sinks).run(analysis)
    assert analysis.closed and sinks._closed


def test_a_failing_output_is_an_error_of_the_summary(tmp_path):
    warnings = []
    sinks = alert_sinks(tmp_path, warn=warnings.append)

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    sinks.log._append = full
    outcome = Monitor(sinks).run(FakeAnalysis(fighting(2)))
    assert "No space left on device" in outcome.summary.error and len(warnings) == 1
    assert outcome.summary.lost_alerts == 2 and outcome.exit_code == 1


def test_an_interruption_is_a_clean_end_that_names_the_signal(tmp_path):
    analysis = FakeAnalysis(fighting(1), error=Interrupted("SIGTERM"))
    outcome = Monitor(alert_sinks(tmp_path)).run(analysis)
    assert analysis.interrupted and analysis.closed
    assert outcome.summary.signal == "SIGTERM" and outcome.summary.error is None
    assert outcome.failure is None and outcome.exit_code == 0


def test_nothing_at_all_is_an_empty_outcome(tmp_path):
    outcome = Monitor(AlertSinks()).run(FakeAnalysis([], frames=0))
    assert outcome.empty and outcome.summary.alerts is None and outcome.summary.delivery is None


def test_exit_codes_follow_the_summary():
    assert RunOutcome(RunSummary("cam", frames=1)).exit_code == 0
    assert RunOutcome(RunSummary("cam", frames=1, error="lost")).exit_code == 1
    lost = {"webhook": {"lost": 1}}
    assert RunOutcome(RunSummary("cam", frames=1, delivery=lost)).exit_code == 1


# -- signals ---------------------------------------------------------------------------


def test_a_signal_waits_for_the_critical_section_to_end():
    stop = StopSignals()
    steps = []
    with stop, pytest.raises(Interrupted) as raised:
        with stop.critical():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("section finished")
        steps.append("not reached")
    assert steps == ["section finished"] and raised.value.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not stop._handle  # restored


def test_a_signal_outside_a_section_stops_at_once_and_after_defer_is_only_recorded():
    stop = StopSignals()
    with stop:
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
        stop.defer()
        os.kill(os.getpid(), signal.SIGTERM)  # flushing: recorded, not raised
        with stop.critical():
            pass
    assert stop.received == "SIGINT"


def test_a_signal_during_a_delivery_lets_the_window_and_its_alert_finish(tmp_path):
    printed = []

    def on_result(result) -> None:
        printed.append("window")
        if result.index == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    sinks = alert_sinks(tmp_path, emit=lambda record, text: printed.append("alert"))
    analysis = FakeAnalysis(fighting(4))
    outcome = Monitor(sinks).run(analysis, on_result=on_result)
    assert printed == ["window", "alert"] * 2  # the second window went out whole
    assert outcome.summary.signal == "SIGTERM" and outcome.summary.interrupted
    assert outcome.exit_code == 0


# -- opening the analysis, folders, outputs --------------------------------------------


def test_a_file_is_analysed_in_windows_with_each_frame_seen(checkpoint, small_clip):
    predictor = Predictor.from_checkpoint(checkpoint, size=32)
    frames = []
    analysis = open_analysis(
        predictor,
        parse_source(str(small_clip)),
        window=1.0,
        stride=1.0,
        on_frame=lambda frame, latest: frames.append(frame.time),
    )
    assert isinstance(analysis, WindowAnalysis)
    outcome = Monitor(AlertSinks()).run(analysis)
    assert outcome.summary.windows == 2 and len(frames) == 50 and outcome.exit_code == 0


def test_a_folder_summary_counts_predictions_and_names_failures():
    summary = FolderSummary("clips")
    summary.add(ClipPrediction("clips/a.mp4", [("walking", 0.8)], None, 12.0, 50, 2.0))
    summary.add(("clips/b.mp4", "not a video"))
    assert summary.to_dict() == {
        "type": "summary",
        "source": "clips",
        "files": 2,
        "predicted": 1,
        "failed": [{"source": "clips/b.mp4", "error": "not a video"}],
    }
    assert summary.describe() == "1 of 2 videos predicted; 1 could not be read: clips/b.mp4"
    assert FolderSummary("clips", predicted=3).describe() == "3 of 3 videos predicted"


def test_outputs_are_checked_before_anything_is_written(tmp_path):
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    with pytest.raises(OverwriteError):
        check_outputs(annotate=source, inputs=[source])
    with pytest.raises(OverwriteError):
        check_outputs(events=source, inputs=[None, source])
    with pytest.raises(OverwriteError):  # the two outputs are one file
        check_outputs(annotate=tmp_path / "out.mp4", events=tmp_path / "out.mp4")
    with pytest.raises(ValueError, match="unsupported extension"):
        check_outputs(annotate=tmp_path / "out.gif")
    with pytest.raises(ValueError, match="is a folder"):
        check_outputs(events=tmp_path)
    check_outputs(annotate=tmp_path / "out.mp4", events=tmp_path / "events.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # nothing created
    assert source.read_bytes() == b"video"
