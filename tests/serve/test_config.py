"""The serve configuration: a valid file is read with its defaults and relative paths; each
error is one line naming the camera and the field; credentials never appear."""

from __future__ import annotations

import pytest

from rsanet.serve.config import ConfigError, load_config, parse_config


@pytest.fixture
def base(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "rules.yaml").write_text("rules: {fighting: 0.5}\n")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "clip.onnx").write_bytes(b"x")
    return tmp_path


def config(**changes):
    data = {
        "model": "model.pt",
        "rules": "rules.yaml",
        "cameras": [
            {"name": "door", "url": "rtsp://viewer:s3cret@10.0.0.5/stream1"},
            {"name": "yard", "url": "clip.mp4", "loop": True},
        ],
    }
    data.update(changes)
    return data


def test_a_two_camera_file_with_its_defaults(base):
    path = base / "serve.yaml"
    path.write_text(
        "model: model.pt\nrules: rules.yaml\nwindow_seconds: 2\n"
        "cameras:\n  - {name: door, url: 'rtsp://viewer:s3cret@cam/s'}\n"
        "  - {name: yard, url: clip.mp4, rules: rules.yaml}\n"
        "storage: {folder: data, pre_seconds: 3}\nhttp: {port: 9000}\n"
        "webhook: {url: 'https://hooks.example/a', auth: 'Bearer abcdefgh', retries: 3}\n"
    )
    loaded = load_config(path)
    assert loaded.model == base / "model.pt" and loaded.backend == "torch"
    assert loaded.stride_seconds == 1.0 and loaded.device == "cpu"
    assert loaded.max_batch is None  # the server's default for the device
    assert parse_config(config(max_batch=8), base).max_batch == 8
    assert [c.name for c in loaded.cameras] == ["door", "yard"]
    assert loaded.cameras[1].url == str(base / "clip.mp4")
    assert loaded.rules_of(loaded.cameras[0]) == base / "rules.yaml"
    assert loaded.storage.folder == base / "data" and loaded.storage.pre_seconds == 3
    assert loaded.http.host == "127.0.0.1" and loaded.http.port == 9000
    assert loaded.webhook.retries == 3
    assert loaded.cameras[0].display_url == "rtsp://viewer:***@cam/s"
    assert "s3cret" not in repr(loaded) and "abcdefgh" not in repr(loaded)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cameras": [{"name": "door", "url": "rtsp://a:s3cret@x/s"}, {"name": "gate"}]},
         "cameras[1] (gate): url: missing"),
        ({"cameras": [{"url": "rtsp://x/s"}]}, "cameras[0]: name: missing"),
        ({"cameras": [{"name": "a b", "url": "rtsp://x/s"}]}, "cameras[0] (a b): name:"),
        ({"cameras": [{"name": "door", "url": "rtsp://x/s"}, {"name": "door", "url": "0"}]},
         "cameras[1] (door): name: already used by cameras[0]"),
        ({"cameras": [{"name": "door", "url": "nothing.mp4"}]}, "cameras[0] (door): url: no such"),
        ({"cameras": [{"name": "door", "url": "0", "rules": "none.yaml"}]},
         "cameras[0] (door): rules: no such file"),
        ({"cameras": [{"name": "door", "url": "0", "zoom": 2}]},
         "cameras[0] (door): zoom: unknown"),
        ({"cameras": []}, "cameras: expected a list"),
        ({"model": None}, "model: missing"),
        ({"window_seconds": 0}, "window_seconds: must be > 0"),
        ({"smoothing": 1.5}, "smoothing: expected an integer"),
        ({"device": "gpu"}, "device: expected cpu, cuda or cuda:N"),
        ({"storage": {"pre_seconds": -1}}, "storage: pre_seconds: must be >= 0"),
        ({"http": {"port": 70000}}, "http: port: expected an integer"),
        ({"http": {"token": "short"}}, "http: token: too short"),
        ({"webhook": {"url": "ftp://u:s3cret@x/"}}, "webhook: url: must start with http"),
        ({"backend": "onnxruntime"}, "model: backend onnxruntime needs an .onnx file"),
        ({"precision": "int4"}, "precision: expected one of fp32, bf16, fp16, int8"),
        ({"model": "clip.onnx", "precision": "int8"},
         "precision: an ONNX model runs in the precision it was exported in"),
        ({"calibration": "none.yaml"}, "calibration: no such file"),
        ({"calibration_clips": 0}, "calibration_clips: expected an integer"),
        ({"max_batch": 0}, "max_batch: expected an integer in [1, 1024], got 0"),
    ],
)  # fmt: skip
def test_each_error_is_one_line_naming_the_field(base, change, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(config(**change), base, "serve.yaml")
    text = str(caught.value)
    assert text.startswith("serve.yaml: ") and message in text, text
    assert "\n" not in text and "s3cret" not in text


def test_a_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
