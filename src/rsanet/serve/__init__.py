"""``rsanet serve``: many cameras in one process, durable alerts with evidence, an HTTP API
and a dashboard (see ``docs/deploy.md``).

One module per concept: :mod:`~rsanet.serve.config` (the YAML file),
:mod:`~rsanet.serve.cameras` (a reader per camera), :mod:`~rsanet.serve.batching` (batched
forwards for all cameras), :mod:`~rsanet.serve.store` (SQLite events and outbox),
:mod:`~rsanet.serve.delivery` (the outbox workers, the webhook), :mod:`~rsanet.serve.mqtt`
(the MQTT output), :mod:`~rsanet.serve.evidence` (clips, snapshots, retention),
:mod:`~rsanet.serve.web` (API, dashboard, security),
:mod:`~rsanet.serve.metrics` (Prometheus) and :mod:`~rsanet.serve.server` (all of it).
Heavy imports (FastAPI, uvicorn, PyAV) happen in the modules that need them.
"""

from rsanet.serve.config import CameraConfig, ConfigError, ServeConfig, load_config, parse_config
from rsanet.serve.store import EventStore

__all__ = [
    "CameraConfig",
    "ConfigError",
    "EventStore",
    "ServeConfig",
    "load_config",
    "parse_config",
]
