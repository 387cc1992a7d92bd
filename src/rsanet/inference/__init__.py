"""Deployment: prediction over files, folders and live streams, alerts, annotated videos,
and export to ONNX / TorchScript.

>>> from rsanet.inference import Predictor, decode_frames, parse_source
>>> predictor = Predictor.from_checkpoint("model.pt", size=224)      # doctest: +SKIP
>>> predictor.predict_file("clip.mp4").top                            # doctest: +SKIP
[('fighting', 0.91), ...]
>>> frames = decode_frames(parse_source("long.mp4"), short_side=predictor.short_side)
>>> for window in predictor.analyse(frames, window=2.0, stride=1.0):  # doctest: +SKIP
...     print(window.start, window.end, window.top[0])

Live sources (``rtsp://``, ``http://``, ``/dev/video0``, or a file replayed in real time) go
through :class:`LiveAnalysis`; a whole monitored run (alerts, signals, summary) through
:class:`Monitor`; see ``docs/deploy.md``.
"""

from rsanet.inference.alerts import (
    AlertEngine,
    AlertEvent,
    AlertRule,
    RulesError,
    load_rules,
    parse_rules,
)
from rsanet.inference.annotate import Annotator
from rsanet.inference.export import (
    FORMATS,
    ExportResult,
    OnnxRuntimeBackend,
    SafetensorsBackend,
    TorchScriptBackend,
    export_model,
    export_onnx,
    export_safetensors,
    export_torchscript,
)
from rsanet.inference.monitor import (
    Interrupted,
    Monitor,
    RunOutcome,
    StopSignals,
    open_analysis,
)
from rsanet.inference.predictor import (
    Backend,
    CheckpointError,
    Classifier,
    NonFiniteScoresError,
    Predictor,
    TorchBackend,
    WindowAnalysis,
    load_classifier,
    top_k,
)
from rsanet.inference.redact import redact_text, redact_url
from rsanet.inference.rescorer import Rescorer, fit_rescorer
from rsanet.inference.results import (
    ClipPrediction,
    FolderSummary,
    Outage,
    RunSummary,
    WindowResult,
)
from rsanet.inference.sinks import AlertSinks, EventLog, WebhookSink, check_outputs
from rsanet.inference.smoothing import ScoreSmoother
from rsanet.inference.sources import (
    Frame,
    SourceError,
    SourceSpec,
    decode_frames,
    list_videos,
    parse_source,
)
from rsanet.inference.stream import Backoff, FrameRing, LiveAnalysis, StreamReader, pyav_opener
from rsanet.inference.windows import SlidingWindow, Window, tsn_pick

__all__ = [
    "FORMATS",
    "AlertEngine",
    "AlertEvent",
    "AlertRule",
    "AlertSinks",
    "Annotator",
    "Backend",
    "Backoff",
    "CheckpointError",
    "Classifier",
    "ClipPrediction",
    "EventLog",
    "ExportResult",
    "FolderSummary",
    "Frame",
    "FrameRing",
    "Interrupted",
    "LiveAnalysis",
    "Monitor",
    "NonFiniteScoresError",
    "OnnxRuntimeBackend",
    "Outage",
    "Predictor",
    "RulesError",
    "RunOutcome",
    "RunSummary",
    "Rescorer",
    "ScoreSmoother",
    "SlidingWindow",
    "SourceError",
    "SourceSpec",
    "StopSignals",
    "StreamReader",
    "TorchBackend",
    "SafetensorsBackend",
    "TorchScriptBackend",
    "WebhookSink",
    "Window",
    "WindowAnalysis",
    "WindowResult",
    "check_outputs",
    "decode_frames",
    "fit_rescorer",
    "export_model",
    "export_onnx",
    "export_safetensors",
    "export_torchscript",
    "list_videos",
    "load_classifier",
    "load_rules",
    "open_analysis",
    "parse_rules",
    "parse_source",
    "redact_text",
    "redact_url",
    "pyav_opener",
    "top_k",
    "tsn_pick",
]
