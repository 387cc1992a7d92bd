"""The configuration of ``rsanet serve``: a YAML file of cameras and shared settings.

::

    model: runs/best.pt              # checkpoint, NAME.safetensors, or model.onnx
    backend: torch                   # or onnxruntime (with an .onnx model)
    device: cpu                      # cpu, cuda, cuda:N
    max_batch: null                  # windows per forward (default: 4 on a CPU, 32 on a GPU)
    precision: fp32                  # fp32, bf16, fp16 (GPU), int8 (CPU; torch backend)
    calibration: null                # int8: config whose training split calibrates it
    calibration_clips: 32            #   (default: the checkpoint's training config)
    float_from: null                 # int8: this block/stage (layer4) on stays in float
    window_seconds: 2
    stride_seconds: 1
    smoothing: 3
    rescorer: null                   # rsanet fit-rescorer's file: its window, stride
                                     #   and smoothing are used (give none that differ)
    rules: rules.yaml                # for the cameras without their own
    cameras:
      - {name: door, url: "rtsp://viewer:secret@10.0.0.5/stream1", rules: door.yaml}
      - {name: yard, url: clips/yard.mp4, loop: true}   # a file replayed in real time
    storage: {folder: serve-data, pre_seconds: 5, post_seconds: 5,
              retention_days: 14, max_total_mb: 20000}
    http: {host: 127.0.0.1, port: 8080, token: null}
    webhook: {url: "https://hooks.example/alerts", auth: "Bearer abc", retries: 10}
    mqtt: {host: broker.lan, port: 1883, username: rsanet, password: secret,
           topic_prefix: rsanet, client_id: rsanet-serve, qos: 1, tls: false}

Relative paths are read from the configuration's folder. Every error is one line that
names the field (and the camera: ``cameras[1] (door): url: missing``); URLs in messages
are redacted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsanet.inference.precision import PRECISIONS
from rsanet.inference.redact import redact_text, redact_url

#: camera names appear in URLs (``/api/cameras/NAME/live.mjpg``) and metric labels
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOCALHOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(ValueError):
    """An unusable serve configuration; the message is one line naming the field."""


@dataclass(frozen=True, repr=False)
class CameraConfig:
    name: str
    url: str
    rules: Path | None = None
    loop: bool = False

    @property
    def display_url(self) -> str:
        """The URL as the API, the logs and the page show it: credentials masked."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"CameraConfig(name={self.name!r}, url={self.display_url!r}, "
            f"rules={self.rules!r}, loop={self.loop!r})"
        )


@dataclass(frozen=True)
class StorageConfig:
    folder: Path
    pre_seconds: float = 5.0
    post_seconds: float = 5.0
    retention_days: float | None = 30.0
    max_total_mb: float | None = 10_000.0


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = field(default=None, repr=False)

    @property
    def local(self) -> bool:
        return self.host in LOCALHOSTS


@dataclass(frozen=True)
class WebhookConfig:
    url: str = field(repr=False)
    auth: str | None = field(default=None, repr=False)
    retries: int = 10
    timeout: float = 5.0

    @property
    def display_url(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker events and availability are published to (see
    :mod:`rsanet.serve.mqtt`); the password is never shown."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    topic_prefix: str = "rsanet"
    client_id: str = "rsanet-serve"
    qos: int = 1
    tls: bool = False

    @property
    def display(self) -> str:
        """``mqtt://user@host:port`` (no password)."""
        user = f"{self.username}@" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        return redact_text(f"{scheme}://{user}{self.host}:{self.port}")


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    cameras: list[CameraConfig]
    storage: StorageConfig
    backend: str = "torch"
    device: str = "cpu"
    max_batch: int | None = None
    precision: str = "fp32"
    calibration: Path | None = None
    calibration_clips: int = 32
    float_from: str | None = None
    window_seconds: float = 2.0
    stride_seconds: float = 1.0
    smoothing: int = 3
    top_k: int = 3
    rescorer: Path | None = None
    rules: Path | None = None
    http: HttpConfig = HttpConfig()
    webhook: WebhookConfig | None = None
    mqtt: MqttConfig | None = None

    def rules_of(self, camera: CameraConfig) -> Path | None:
        return camera.rules or self.rules


TOP_KEYS = {
    "model", "backend", "device", "max_batch", "precision", "calibration", "calibration_clips",
    "float_from", "window_seconds", "stride_seconds", "smoothing", "top_k", "rescorer", "rules",
    "cameras", "storage", "http", "webhook", "mqtt",
}  # fmt: skip
CAMERA_KEYS = {"name", "url", "rules", "loop"}
STORAGE_KEYS = {"folder", "pre_seconds", "post_seconds", "retention_days", "max_total_mb"}
HTTP_KEYS = {"host", "port", "token"}
WEBHOOK_KEYS = {"url", "auth", "retries", "timeout"}
MQTT_KEYS = {"host", "port", "username", "password", "topic_prefix", "client_id", "qos", "tls"}
#: an MQTT topic level: no wildcards, no empty level
TOPIC_PATTERN = re.compile(r"^[^/+#\x00]+(/[^/+#\x00]+)*$")


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(redact_text(f"{where}: {message}" if where else message))


def _mapping(value: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(map(str, value)) - keys)
    if unknown:
        field_where = f"{where}: {unknown[0]}" if where else unknown[0]
        raise _fail(field_where, f"unknown field (known: {', '.join(sorted(keys))})")
    return value


def _number(
    value: Any, where: str, *, low: float = 0.0, strict: bool = True, high: float = math.inf
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, f"expected a number, got {value!r}")
    if value < low or (strict and value == low) or value > high:
        bound = ">" if strict else ">="
        upper = f" and <= {high:g}" if high < math.inf else ""
        raise _fail(where, f"must be {bound} {low:g}{upper}, got {value!r}")
    return float(value)


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, f"expected an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, "missing" if value is None else f"expected text, got {value!r}")
    return value.strip()


def _path(value: Any, where: str, base: Path, *, must_exist: bool = True) -> Path:
    path = Path(_text(value, where)).expanduser()
    if not path.is_absolute():
        path = base / path
    if must_exist and not path.exists():
        raise _fail(where, f"no such file {str(path)!r}")
    return path


def _optional(data: Mapping[str, Any], key: str, default: Any) -> Any:
    value = data.get(key)
    return default if value is None else value


def check_device(device: str, where: str = "device") -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (availability is checked when the model is loaded)."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise _fail(where, f"expected cpu, cuda or cuda:N, got {device!r}")
    return device


def parse_camera(data: Any, number: int, base: Path) -> CameraConfig:
    where = f"cameras[{number}]"
    if isinstance(data, Mapping) and isinstance(data.get("name"), str):
        where += f" ({data['name']})"
    data = _mapping(data, where, CAMERA_KEYS)
    if data.get("name") is None:
        raise _fail(f"{where}: name", "missing")
    name = _text(data.get("name"), f"{where}: name")
    if not NAME_PATTERN.match(name):
        raise _fail(f"{where}: name", "use letters, digits, '.', '_' and '-' (at most 64)")
    url = data.get("url")
    if url is not None and not isinstance(url, str):
        url = str(url)  # a webcam number: 0
    url = _text(url, f"{where}: url")
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", url)
    if not scheme and not url.isdigit() and not url.startswith("/dev/") and ":" not in url:
        path = Path(url).expanduser()
        url = str(path if path.is_absolute() else base / path)
        if not Path(url).exists():
            raise _fail(f"{where}: url", f"no such file {url!r}")
    rules = data.get("rules")
    loop = data.get("loop", False)
    if not isinstance(loop, bool):
        raise _fail(f"{where}: loop", f"expected true or false, got {loop!r}")
    return CameraConfig(
        name=name,
        url=url,
        rules=None if rules is None else _path(rules, f"{where}: rules", base),
        loop=loop,
    )


def parse_config(data: Any, base: str | Path = ".", where: str = "") -> ServeConfig:
    """A :class:`ServeConfig` from the loaded YAML document (paths relative to ``base``)."""
    base = Path(base)
    prefix = f"{where}: " if where else ""
    try:
        return _parse(data, base)
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}") from None


def _parse(data: Any, base: Path) -> ServeConfig:
    data = _mapping(data, "", TOP_KEYS)
    if data.get("model") is None:
        raise _fail("model", "missing")
    model = _path(data["model"], "model", base)
    backend = _optional(data, "backend", "onnxruntime" if model.suffix == ".onnx" else "torch")
    if backend not in ("torch", "onnxruntime"):
        raise _fail("backend", f"expected torch or onnxruntime, got {backend!r}")
    if backend == "onnxruntime" and model.suffix.lower() != ".onnx":
        raise _fail("model", f"backend onnxruntime needs an .onnx file, got {str(model)!r}")
    device = check_device(_optional(data, "device", "cpu"))
    max_batch = data.get("max_batch")
    max_batch = None if max_batch is None else _integer(max_batch, "max_batch", 1, 1024)
    precision = _optional(data, "precision", "fp32")
    if precision not in PRECISIONS:
        raise _fail("precision", f"expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "fp32" and backend == "onnxruntime":
        raise _fail(
            "precision",
            "an ONNX model runs in the precision it was exported in (rsanet export "
            "--precision int8); precision is for the torch backend",
        )
    calibration = data.get("calibration")
    calibration = None if calibration is None else _path(calibration, "calibration", base)
    calibration_clips = _integer(
        _optional(data, "calibration_clips", 32), "calibration_clips", 1, 4096
    )
    float_from = data.get("float_from")  # checked against the model when it is loaded
    float_from = None if float_from is None else _text(float_from, "float_from")
    window = _number(_optional(data, "window_seconds", 2.0), "window_seconds", high=300)
    stride = _number(_optional(data, "stride_seconds", window / 2), "stride_seconds", high=300)
    smoothing = _integer(_optional(data, "smoothing", 3), "smoothing", 1, 1000)
    rescorer = data.get("rescorer")
    if rescorer is not None:
        rescorer = _path(rescorer, "rescorer", base)
        window, stride, smoothing = _rescorer_stream(rescorer, data)
    top_k = _integer(_optional(data, "top_k", 3), "top_k", 1, 1000)
    rules = data.get("rules")
    rules = None if rules is None else _path(rules, "rules", base)
    cameras_data = data.get("cameras")
    if not isinstance(cameras_data, list) or not cameras_data:
        raise _fail("cameras", "missing" if cameras_data is None else "expected a list of cameras")
    cameras = [parse_camera(item, number, base) for number, item in enumerate(cameras_data)]
    seen: dict[str, int] = {}
    for number, camera in enumerate(cameras):
        if camera.name in seen:
            raise _fail(
                f"cameras[{number}] ({camera.name}): name",
                f"already used by cameras[{seen[camera.name]}]",
            )
        seen[camera.name] = number
    storage_data = _mapping(_optional(data, "storage", {}), "storage", STORAGE_KEYS)
    retention = storage_data.get("retention_days", 30.0)
    total = storage_data.get("max_total_mb", 10_000.0)
    storage = StorageConfig(
        folder=_path(
            _optional(storage_data, "folder", "serve-data"),
            "storage: folder",
            base,
            must_exist=False,
        ),
        pre_seconds=_number(
            _optional(storage_data, "pre_seconds", 5.0),
            "storage: pre_seconds",
            strict=False,
            high=60,
        ),
        post_seconds=_number(
            _optional(storage_data, "post_seconds", 5.0),
            "storage: post_seconds",
            strict=False,
            high=60,
        ),
        retention_days=None if retention is None else _number(retention, "storage: retention_days"),
        max_total_mb=None if total is None else _number(total, "storage: max_total_mb"),
    )
    http_data = _mapping(_optional(data, "http", {}), "http", HTTP_KEYS)
    token = http_data.get("token")
    if token is not None:
        token = _text(token, "http: token")
        if len(token) < 8:
            raise _fail("http: token", "too short (at least 8 characters)")
    http = HttpConfig(
        host=_text(_optional(http_data, "host", "127.0.0.1"), "http: host"),
        port=_integer(_optional(http_data, "port", 8080), "http: port", 0, 65535),
        token=token,
    )
    webhook = None
    if data.get("webhook") is not None:
        hook = _mapping(data["webhook"], "webhook", WEBHOOK_KEYS)
        url = _text(hook.get("url"), "webhook: url")
        if not re.match(r"^https?://[^/]", url, re.IGNORECASE):
            raise _fail("webhook: url", f"must start with http:// or https://, got {url!r}")
        auth = hook.get("auth")
        webhook = WebhookConfig(
            url=url,
            auth=None if auth is None else _text(auth, "webhook: auth"),
            retries=_integer(_optional(hook, "retries", 10), "webhook: retries", 0, 10**6),
            timeout=_number(_optional(hook, "timeout", 5.0), "webhook: timeout", high=300),
        )
    mqtt = None if data.get("mqtt") is None else parse_mqtt(data["mqtt"])
    return ServeConfig(
        model=model,
        cameras=cameras,
        storage=storage,
        backend=backend,
        device=device,
        max_batch=max_batch,
        precision=precision,
        calibration=calibration,
        calibration_clips=calibration_clips,
        float_from=float_from,
        window_seconds=window,
        stride_seconds=stride,
        smoothing=smoothing,
        top_k=top_k,
        rescorer=rescorer,
        rules=rules,
        http=http,
        webhook=webhook,
        mqtt=mqtt,
    )


def _rescorer_stream(path: Path, data: Mapping[str, Any]) -> tuple[float, float, int]:
    """The window, stride and smoothing a rescorer was fitted on; an error for a
    configured one that differs (the rescorer only reads the stream it learned)."""
    from rsanet.inference.rescorer import Rescorer

    try:
        rescorer = Rescorer.load(path)
    except ValueError as error:
        raise _fail("rescorer", str(error)) from None
    keys = {"window_s": "window_seconds", "stride_s": "stride_seconds", "smoothing": "smoothing"}
    given = {name: data.get(key) for name, key in keys.items()}
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _fail(keys[name], f"expected a number, got {value!r}")
    differs = rescorer.mismatch(**given)
    if differs is not None:
        name, value, own = differs
        raise _fail(
            keys[name],
            f"{value:g}, but the rescorer {path.name} was fitted on scores with "
            f"{keys[name]} {own:g}: leave {keys[name]} out",
        )
    return rescorer.window_s, rescorer.stride_s, rescorer.smoothing


def parse_mqtt(data: Any) -> MqttConfig:
    """The ``mqtt`` block: the broker, credentials, topic prefix, QoS (1 or 2: a publish is
    acknowledged by the broker before its delivery is marked sent) and TLS."""
    data = _mapping(data, "mqtt", MQTT_KEYS)
    host = _text(data.get("host"), "mqtt: host")
    tls = _optional(data, "tls", False)
    if not isinstance(tls, bool):
        raise _fail("mqtt: tls", f"expected true or false, got {tls!r}")
    prefix = _text(_optional(data, "topic_prefix", "rsanet"), "mqtt: topic_prefix")
    if not TOPIC_PATTERN.match(prefix):
        raise _fail(
            "mqtt: topic_prefix",
            f"levels separated by '/', none empty, no wildcards '+' or '#', got {prefix!r}",
        )
    username, password = data.get("username"), data.get("password")
    if password is not None and username is None:
        raise _fail("mqtt: password", "given without a username")
    client_id = _text(_optional(data, "client_id", "rsanet-serve"), "mqtt: client_id")
    if len(client_id.encode()) > 65535:
        raise _fail("mqtt: client_id", "too long")
    qos = data.get("qos", 1)
    if qos not in (1, 2) or isinstance(qos, bool):
        raise _fail(
            "mqtt: qos",
            f"expected 1 or 2 (a delivery is marked sent once the broker acknowledged it), "
            f"got {qos!r}",
        )
    return MqttConfig(
        host=host,
        port=_integer(_optional(data, "port", 8883 if tls else 1883), "mqtt: port", 1, 65535),
        username=None if username is None else _text(str(username), "mqtt: username"),
        password=None if password is None else str(password),
        topic_prefix=prefix,
        client_id=client_id,
        qos=int(qos),
        tls=tls,
    )


def load_config(path: str | Path) -> ServeConfig:
    """Read and check a serve configuration file (YAML, or JSON)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(
            redact_text(f"{path}: not valid YAML: {' '.join(str(error).split())}")
        ) from None
    return parse_config(data, path.parent, str(path))
