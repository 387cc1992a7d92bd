"""No secret printed: every URL goes through one redaction, wherever it is shown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsanet.inference import Backoff, Frame, FrameRing, StreamReader, parse_source
from rsanet.inference.redact import redact_record, redact_text, redact_url, split_credentials


@pytest.mark.parametrize(
    "url, shown",
    [
        ("rtsp://viewer:secret@10.0.0.9:554/s1", "rtsp://viewer:***@10.0.0.9:554/s1"),
        ("rtsp://admin:pa/ss@10.0.0.9/s1", "rtsp://admin:***@10.0.0.9/s1"),
        ("rtsp://admin:p@s/s@w@10.0.0.9/s1", "rtsp://admin:***@10.0.0.9/s1"),
        ("rtsp://admin:pa?s#s@10.0.0.9/s1", "rtsp://admin:***@10.0.0.9/s1"),
        ("rtsp://admin:p%2Fss@10.0.0.9/s1", "rtsp://admin:***@10.0.0.9/s1"),
        ("https://ghp_T0KEN@hooks.example/x", "https://***@hooks.example/x"),
        (
            "http://h/x?site=1&token=T&API-Key=K&access_token=A&monkey=2",
            "http://h/x?site=1&token=***&API-Key=***&access_token=***&monkey=2",
        ),
        (
            "https://h/x?password=P;secret=S&auth=U&client_secret=C#id_token=I",
            "https://h/x?password=***;secret=***&auth=***&client_secret=***#id_token=***",
        ),
        ("http://h/x?email=a@b.example", "http://h/x?email=a@b.example"),
        ("http://[::1]:8080/cam", "http://[::1]:8080/cam"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_credentials_are_split_off_decoded():
    assert split_credentials("https://u:p%2Fq@h:8/x?k=1") == ("https://h:8/x?k=1", "u", "p/q")
    assert split_credentials("https://TOKEN@h/x") == ("https://h/x", "TOKEN", None)
    assert split_credentials("https://h/x") == ("https://h/x", None, None)


def test_text_records_and_sources():
    text = "cannot open 'rtsp://a:b/c@h/s': refused; see http://t0k@x/y?key=K"
    assert (
        redact_text(text) == "cannot open 'rtsp://a:***@h/s': refused; see http://***@x/y?key=***"
    )
    record = {"source": "rtsp://a:b@h/s", "outages": [{"reason": "rtsp://a:b@h/s: lost"}], "n": 1}
    assert json.dumps(redact_record(record)).count("***") == 2
    assert str(parse_source("rtsp://admin:pa/ss@10.0.0.9/s1")) == "rtsp://admin:***@10.0.0.9/s1"
    assert str(parse_source("http://10.0.0.9/cam.ts?token=T")) == "http://10.0.0.9/cam.ts?token=***"


def test_outage_reasons_are_redacted():
    calls = []

    def opener():
        calls.append(1)
        if len(calls) == 1:  # one frame, then the camera drops
            yield Frame(time=0.0, image=np.zeros((2, 2, 3), np.uint8))
        raise ConnectionError("rtsp://admin:pa/ss@10.0.0.9/s1: connection reset")

    reader = StreamReader(opener, FrameRing(10), backoff=Backoff(initial=0.01), max_reconnects=1)
    reader.run()
    assert "admin:***@" in reader.outages[0].reason and "pa/ss" not in reader.outages[0].reason
    assert "gave up" in reader.error and "pa/ss" not in reader.error


def test_cli_prints_no_secret(cli, checkpoint, closed_port):
    url = f"http://viewer:pa%2Fss@127.0.0.1:{closed_port}/cam.ts?token=T0K3N"
    result = cli("predict", url, "--checkpoint", checkpoint, "--size", 32, "--timeout", 1)
    assert result.code == 2 and "cannot open" in result.err
    for secret in ("pa%2Fss", "pa/ss", "T0K3N"):
        assert secret not in result.err + result.out
    assert "viewer:***@" in result.err and "token=***" in result.err
