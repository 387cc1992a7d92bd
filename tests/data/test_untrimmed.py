"""Readers of untrimmed recordings: AI Hub CCTV (class folders of mp4 + XML), UCF-Crime and
XD-Violence (frame numbers), our intervals CSV / JSON, and ``rsanet data check`` on them.
Every fixture is written here, quirks of the real downloads included."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from rsanet.cli import main
from rsanet.data import (
    AIHUB_CLASSES,
    AnnotationError,
    EventInterval,
    check_dataset,
    parse_seconds,
    read_aihub_cctv,
    read_intervals,
    read_ucf_crime,
    read_untrimmed,
    read_xd_violence,
)
from rsanet.data.aihub import normalise_object_name

ASSAULT = "01.폭행(assult)"
TRESPASS = "07.침입(trespass)"
DATEFIGHT = "10.데이트 폭력 및 추행(datefight)"


def aihub_xml(
    *,
    eventname: str | None = "assault",
    start: str | None = "00:00:01.0",
    duration: str | None = "00:00:03.5",
    fps: str = "30",
    frames: str = "150",
    objects: tuple = (("person_1", "punching", ((30, 60), (90, 100))),),
    bom: bool = False,
) -> bytes:
    """An AI Hub ``<annotation>`` as the data set writes it (``None`` leaves a field out)."""
    event = "".join(
        f"<{tag}>{value}</{tag}>"
        for tag, value in (("eventname", eventname), ("starttime", start), ("duration", duration))
        if value is not None
    )
    parts = []
    for name, action, spans in objects:
        frames_xml = "".join(f"<frame><start>{a}</start><end>{b}</end></frame>" for a, b in spans)
        parts.append(
            f"<object><objectname>{name}</objectname><position><keyframe>10</keyframe>"
            f"<keypoint><x>320</x><y>240</y></keypoint></position>"
            f"<action><actionname>{action}</actionname>{frames_xml}</action></object>"
        )
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\n<annotation><folder>101-1</folder>'
        "<filename>x.mp4</filename><size><width>640</width><height>480</height></size>"
        f"<header><duration>00:00:05.0</duration><fps>{fps}</fps><frames>{frames}</frames>"
        "<inout>inside</inout><location>교실</location><season>spring</season>"
        "<weather>sunny</weather><time>night</time><population>2</population></header>"
        f"<event>{event}</event>{''.join(parts)}</annotation>"
    )
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def put(root: Path, relative: str, xml: bytes | None, video: bytes | None = None) -> Path:
    """``relative``.mp4 (unique dummy bytes unless ``video``) and ``relative``.xml."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".mp4").write_bytes(video if video is not None else relative.encode())
    if xml is not None:
        path.with_suffix(".xml").write_bytes(xml)
    return path.with_suffix(".mp4")


@pytest.fixture
def aihub(tmp_path) -> Path:
    """Three classes (one folder name in macOS's decomposed Hangul), a session filed twice
    with the same bytes, object names spelled two ways, a BOM, long and short events."""
    root = tmp_path / "aihub"
    same = b"identical session bytes"
    put(
        root,
        f"{ASSAULT}/inside_croki_01/10-1/10-1_cam01_assault03_place07_night_spring",
        aihub_xml(objects=(("Person01", "kicking", ((0, 30),)), ("person_1", "pushing", ()))),
        same,
    )
    put(
        root,
        f"{ASSAULT}/insidedoor_01/10-1/10-1_cam01_assault03_place07_night_spring",
        aihub_xml(),
        same,
    )
    put(
        root,
        unicodedata.normalize("NFD", TRESPASS) + "/outsidedoor_01/20-2/20-2_cam02_trespass01"
        "_place02_day_summer",
        aihub_xml(eventname="trespass", start="00:00:02.3", duration="00:00:01.4", bom=True),
    )
    put(
        root,
        f"{DATEFIGHT}/inside_croki_01/30-1/30-1_cam03_datefight02_place01_day_winter",
        aihub_xml(eventname="datefight", start="00:01.0", duration="00:03.0"),
    )
    return root


# -- AI Hub CCTV -------------------------------------------------------------------------


def test_aihub_reads_classes_events_actions_and_metadata(aihub):
    result = read_aihub_cctv(aihub)
    assert result.bad == []
    assert result.classes == list(AIHUB_CLASSES)
    by_label = {video.labels[0]: video for video in result.videos}
    assert sorted(by_label) == ["assault", "date_violence", "intrusion"]
    assault = by_label["assault"]
    assert "inside_croki_01" in assault.path  # the first copy in path order is kept
    assert assault.events == (EventInterval("assault", 1.0, 4.5),)
    assert (assault.fps, assault.frames, assault.duration_s) == (30.0, 150, 5.0)
    assert [(a.actor, a.label, a.start_s, a.end_s) for a in assault.actions] == [
        ("person_1", "kicking", 0.0, 1.0)
    ]
    assert {k: assault.metadata[k] for k in ("session", "camera", "event", "place")} == {
        "session": "10-1",
        "camera": "cam01",
        "event": "assault03",
        "place": "place07",
    }
    assert (assault.metadata["daynight"], assault.metadata["season"]) == ("night", "spring")
    assert (assault.metadata["location"], assault.metadata["weather"]) == ("교실", "sunny")
    short = by_label["intrusion"]  # about 1.4 s, read from an XML with a BOM
    assert short.events[0].start_s == pytest.approx(2.3)
    assert short.events[0].duration_s == pytest.approx(1.4)
    assert by_label["date_violence"].events == (EventInterval("date_violence", 1.0, 4.0),)


def test_aihub_duplicates_by_content_are_reported_and_one_is_kept(aihub):
    result = read_aihub_cctv(aihub)
    assert len(result.videos) == 3
    [duplicate] = result.duplicates
    assert "insidedoor_01" in duplicate.path and "inside_croki_01" in duplicate.same_as
    assert len(duplicate.sha256) == 64
    assert len(read_aihub_cctv(aihub, deduplicate=False).videos) == 4


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Person01", "person_1"),
        ("person_1", "person_1"),
        ("PERSON 12", "person_12"),
        ("car", "car"),
    ],
)
def test_object_names_are_normalised(name, expected):
    assert normalise_object_name(name) == expected


def test_aihub_class_map_override_dict_yaml_and_json(aihub, tmp_path):
    result = read_aihub_cctv(aihub, class_map={"trespass": "intrusion_at_night", "폭행": "x"})
    labels = sorted(video.labels[0] for video in result.videos)
    # the event name wins over the folder; the user's name gets a class of its own
    assert labels == ["assault", "date_violence", "intrusion_at_night"]
    assert result.classes[-1] == "intrusion_at_night"
    (tmp_path / "map.yaml").write_text("datefight: molestation\n", encoding="utf-8")
    (tmp_path / "map.json").write_text(json.dumps({"assault": "violence"}), encoding="utf-8")
    yaml_map = read_untrimmed("aihub-cctv", aihub, labels=tmp_path / "map.yaml")
    assert "molestation" in {video.labels[0] for video in yaml_map.videos}
    assert yaml_map.labels_source.endswith("map.yaml")
    json_map = read_untrimmed("aihub-cctv", aihub, class_map=str(tmp_path / "map.json"))
    assert "violence" in {video.labels[0] for video in json_map.videos}
    merged = read_aihub_cctv(
        aihub, class_map=dict.fromkeys(("폭행", "assult", "assault"), "violence")
    )
    assert "assault" not in merged.classes and merged.classes[-1] == "violence"
    (tmp_path / "bad.yaml").write_text("- a list\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match="mapping"):
        read_aihub_cctv(aihub, class_map=tmp_path / "bad.yaml")


def test_aihub_folder_class_when_the_event_name_is_absent(tmp_path):
    put(
        tmp_path,
        "05.실신(swoon)/a/1-1/1-1_cam01_swoon01_place01_day_fall",
        aihub_xml(eventname=None),
    )
    [video] = read_aihub_cctv(tmp_path).videos
    assert video.labels == ("fainting",)


def test_reader_accepts_recordings_without_an_event(tmp_path):
    folder = tmp_path / "00.정상(normal)" / "s1"
    folder.mkdir(parents=True)
    (folder / "s1_cam01_normal01_place01_day_spring.mp4").write_bytes(b"video")
    (folder / "s1_cam01_normal01_place01_day_spring.xml").write_text(
        "<annotation><header><fps>10</fps><frames>40</frames></header>"
        "<object><objectname>Person01</objectname><action><actionname>walking</actionname>"
        "<frame><start>0</start><end>20</end></frame></action></object></annotation>"
    )
    [video] = read_aihub_cctv(tmp_path).videos
    assert video.events == () and video.labels == () and video.duration_s == 4.0
    assert video.actions[0].label == "walking" and "eventname" not in video.metadata
    assert video.metadata["session"] == "s1"


def _only_bad(tmp_path, xml: bytes) -> str:
    put(tmp_path, f"{ASSAULT}/a/1-1/1-1_cam01_assault01_place01_day_spring", xml)
    result = read_aihub_cctv(tmp_path)
    assert result.videos == []
    [bad] = result.bad
    assert bad.path.endswith(".xml")
    return bad.reason


def test_bad_unparseable_xml(tmp_path):
    reason = _only_bad(tmp_path, aihub_xml()[:-20])
    assert reason.startswith("unparseable XML") and "re-download" in reason


def test_aihub_xml_in_a_declared_korean_encoding(tmp_path):
    xml = aihub_xml().decode().replace('encoding="utf-8"', 'encoding="euc-kr"').encode("euc-kr")
    put(tmp_path, f"{ASSAULT}/a/1-1/1-1_cam01_assault01_place01_day_spring", xml)
    [video] = read_aihub_cctv(tmp_path).videos
    assert video.metadata["location"] == "교실"


def test_bad_xml_encoding_never_raises(tmp_path):
    xml = aihub_xml().replace(b'encoding="utf-8"', b'encoding="no-such-codec"')
    assert _only_bad(tmp_path, xml).startswith("unparseable XML: unknown encoding")


def test_bad_missing_field(tmp_path):
    reason = _only_bad(tmp_path, aihub_xml(duration=None))
    assert reason.startswith("missing field event/duration")


def test_bad_event_outside_the_video(tmp_path):
    reason = _only_bad(tmp_path, aihub_xml(start="00:00:04.0", duration="00:00:03.0"))
    assert "outside the video, which lasts 5 s" in reason and "fix" in reason


def test_bad_negative_duration(tmp_path):
    reason = _only_bad(tmp_path, aihub_xml(duration="-00:00:01.0"))
    assert reason.startswith("negative duration")


def test_bad_unknown_class(tmp_path):
    put(tmp_path, "misc/1-1_cam01_x_place01_day_spring", aihub_xml(eventname="juggling"))
    [bad] = read_aihub_cctv(tmp_path).bad
    assert bad.reason.startswith("unknown class: event/eventname 'juggling'")
    assert "class map" in bad.reason


def test_bad_action_frames_outside_the_video(tmp_path):
    reason = _only_bad(tmp_path, aihub_xml(objects=(("person_1", "kicking", ((140, 400),)),)))
    assert reason.startswith("object person_1: the action kicking")


def test_aihub_video_without_xml_and_xml_without_video(tmp_path):
    put(tmp_path, f"{ASSAULT}/a/1-1/lonely", None)
    (tmp_path / ASSAULT / "a" / "1-1" / "orphan.xml").write_bytes(aihub_xml())
    reasons = sorted(bad.reason for bad in read_aihub_cctv(tmp_path).bad)
    assert reasons[0].startswith("no annotation: lonely.xml is missing next to it")
    assert reasons[1].startswith("no video: orphan.mp4 is missing next to it")


# -- UCF-Crime ---------------------------------------------------------------------------


def test_ucf_crime_frames_to_seconds_minus_one_normal_and_subfolders(tmp_path):
    (tmp_path / "Anomaly-Videos" / "Arson").mkdir(parents=True)
    (tmp_path / "Anomaly-Videos" / "Arson" / "Arson011_x264.mp4").write_bytes(b"v")
    (tmp_path / "Temporal_Anomaly_Annotation.txt").write_text(
        "Arson011_x264.mp4  Arson  150  420  680  1267\n"
        "Burglary005_x264.mp4  Burglary  4710  5040  -1  -1\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
        "Weird001_x264.mp4  Juggling  1  2  -1  -1\n"
        "Half001_x264.mp4  Arson  10  -1  -1  -1\n"
        "Back001_x264.mp4  Arson  90  30  -1  -1\n"
    )
    result = read_untrimmed("ucf-crime", tmp_path)
    arson, burglary, normal = result.videos
    assert arson.path.endswith("Anomaly-Videos/Arson/Arson011_x264.mp4")  # found by name
    assert arson.events == (
        EventInterval("Arson", 5.0, 14.0),
        EventInterval("Arson", 680 / 30, 1267 / 30),
    )
    assert burglary.events == (EventInterval("Burglary", 157.0, 168.0),)
    assert normal.events == () and normal.labels == () and normal.fps == 30.0
    assert result.classes == ["Arson", "Burglary"]
    reasons = [bad.reason for bad in result.bad]
    assert reasons[0].startswith("unknown class 'Juggling'")
    assert "both must be -1" in reasons[1]
    assert "negative duration" in reasons[2]
    faster = read_ucf_crime(tmp_path / "Temporal_Anomaly_Annotation.txt", tmp_path, fps=15)
    assert faster.videos[1].events[0].start_s == 314.0


# -- XD-Violence -------------------------------------------------------------------------


def test_xd_violence_multi_label_names_and_padding(tmp_path):
    (tmp_path / "annotations.txt").write_text(
        "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 24 96 240 480\n"
        "v=0pUrQeBzXRU__#1_label_B4-0-0 0 48\n"
        "v=normal__#1_label_A\n"
        "v=odd__#1_label_B3-0-0 0 24\n"
        "v=odd__#2_label_B1-0-0 0 24 48\n"
        "v=odd__#3_label_B5-0-0\n"
    )
    result = read_xd_violence(tmp_path / "annotations.txt", tmp_path)
    movie, riot, normal = result.videos
    assert movie.labels == ("explosion", "shooting", "car_accident")
    assert len(movie.events) == 6  # each interval once per label
    assert movie.events[0] == EventInterval("explosion", 1.0, 4.0)
    assert movie.path.endswith("label_G-B2-B6.mp4")
    assert riot.events == (EventInterval("riot", 0.0, 2.0),)
    assert normal.events == () and normal.labels == ()
    assert result.classes == ["shooting", "riot", "car_accident", "explosion"]
    unknown, odd, empty = (bad.reason for bad in result.bad)
    assert unknown.startswith("unknown class code(s) 'B3'")
    assert odd.startswith("expected pairs of frame numbers")
    assert empty.startswith("class abuse but no interval")
    assert read_untrimmed("xd-violence", tmp_path, fps=48).videos[1].events[0].end_s == 1.0


# -- our intervals format ----------------------------------------------------------------


def test_intervals_csv(tmp_path):
    (tmp_path / "intervals.csv").write_text(
        "video,label,start_s,end_s,duration_s\n"
        "cam1/2024-05-01.mp4,fight,12.5,20,600\n"
        "cam1/2024-05-01.mp4,fall,3,4.5,600\n"
        "cam2/quiet.mp4,,,,\n"
        "cam3/broken.mp4,fight,30,20,\n"
        "cam3/broken.mp4,fall,1,2,\n"
        "cam4/late.mp4,fall,590,700,600\n"
        "cam5/half.mp4,fall,1,,\n",
        encoding="utf-8",
    )
    result = read_untrimmed("intervals", tmp_path / "intervals.csv")
    first, quiet = result.videos
    assert first.events == (EventInterval("fall", 3.0, 4.5), EventInterval("fight", 12.5, 20.0))
    assert first.labels == ("fall", "fight") and first.duration_s == 600.0
    assert quiet.events == () and quiet.path.endswith("cam2/quiet.mp4")
    assert result.classes == ["fall", "fight"]
    where = [bad.path.rsplit("/", 1)[-1] for bad in result.bad]
    assert where == ["intervals.csv:5", "intervals.csv:7", "intervals.csv:8"]
    negative, outside, missing = (bad.reason for bad in result.bad)
    assert "negative duration" in negative  # and cam3's good row is left out with it
    assert "outside the video" in outside
    assert missing.startswith("cam5/half.mp4: missing or not a number")


def test_intervals_json_and_unknown_class(tmp_path):
    rows = [
        {"video": "a.mp4", "label": "fight", "start_s": 1, "end_s": 2},
        {"video": "b.mp4"},
        {"video": "c.mp4", "label": "dance", "start_s": 1, "end_s": 2},
    ]
    (tmp_path / "events.json").write_text(json.dumps(rows))
    result = read_intervals(tmp_path / "events.json", tmp_path, labels=["fight", "fall"])
    assert [Path(video.path).name for video in result.videos] == ["a.mp4", "b.mp4"]
    assert result.classes == ["fight", "fall"]
    [bad] = result.bad
    assert bad.path.endswith("events.json:entry 2")
    assert bad.reason.startswith("c.mp4: unknown class 'dance'")


def test_intervals_outside_root_and_raise_policy(tmp_path):
    (tmp_path / "intervals.csv").write_text("video,label,start_s,end_s\n../x.mp4,fight,1,2\n")
    [bad] = read_untrimmed("intervals", tmp_path, quiet=True).bad
    assert bad.reason.startswith("outside the data root")
    with pytest.raises(AnnotationError, match="outside the data root"):
        read_untrimmed("intervals", tmp_path, policy="raise")
    (tmp_path / "intervals.csv").write_text("video,label,start_s,end_s\n")
    with pytest.raises(AnnotationError, match="no recordings"):
        read_untrimmed("intervals", tmp_path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:01:11.5", 71.5), ("01:11.5", 71.5), ("3", 3.0), ("-00:00:01.0", -1.0), ("1:x", None)],
)
def test_parse_seconds(text, seconds):
    assert parse_seconds(text) == seconds


# -- rsanet data check -------------------------------------------------------------------


def test_data_check_aihub_cctv_end_to_end(tmp_path, media, capsys):
    root = tmp_path / "aihub"
    video = media.encode(tmp_path / "v.mp4", media.coded_frames(12), fps=10).read_bytes()
    other = media.encode(tmp_path / "w.mp4", media.coded_frames(14), fps=10).read_bytes()
    session = "10-1/10-1_cam01_assault03_place07_night_spring"
    short = {"fps": "10", "frames": "12", "start": "00:00:00.2", "duration": "00:00:00.8"}
    short["objects"] = (("Person01", "kicking", ((2, 8),)),)
    put(root, f"{ASSAULT}/inside_croki_01/{session}", aihub_xml(**short), video)
    put(root, f"{ASSAULT}/insidedoor_01/{session}", aihub_xml(**short), video)
    put(
        root,
        f"{TRESPASS}/outsidedoor_01/20-2/20-2_cam02_trespass01_place02_day_summer",
        aihub_xml(eventname="trespass", start="00:00:00.5", duration="00:00:00.2", fps="10"),
        other,
    )
    put(root, f"{TRESPASS}/outsidedoor_01/20-2/broken", b"<annotation><header>", other + b"x")
    put(root, f"{TRESPASS}/outsidedoor_01/20-2/cut", aihub_xml(**short), video[:99])
    out = tmp_path / "report.json"
    code = main(
        ["data", "check", str(root), "--format", "aihub-cctv", "--json", "--workers", "0"]
        + ["--out", str(out)]
    )
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text()), report
    assert code == 1
    assert (report["total"], report["ok"]) == (4, 2), report
    reasons = {Path(entry["path"]).name: entry["reason"] for entry in report["bad"]}
    assert set(reasons) == {"broken.xml", "cut.mp4"}
    assert reasons["broken.xml"].startswith("unparseable XML")
    [duplicate] = report["duplicates"]
    assert "insidedoor_01" in duplicate["path"] and "inside_croki_01" in duplicate["same_as"]


def test_data_check_refuses_a_report_over_an_xml(aihub):
    xml = next(aihub.rglob("*trespass01*.xml"))
    with pytest.raises(ValueError, match="is the input"):
        check_dataset("aihub-cctv", aihub, workers=0, progress=False, out=xml)
    assert xml.read_bytes().startswith(b"\xef\xbb\xbf<?xml")


def test_data_check_text_summary_names_duplicates(aihub, tmp_path, media):
    good = media.encode(tmp_path / "v.mp4", media.coded_frames(10), fps=10).read_bytes()
    for video in aihub.rglob("*.mp4"):
        video.write_bytes(good)  # every session now the same bytes
    report = check_dataset("aihub-cctv", aihub, workers=0, progress=False)
    assert (report.total, report.ok, len(report.duplicates)) == (1, 1, 3)
    assert report.summary().endswith("checked 1 samples: 1 ok, 0 bad, 3 duplicate(s) left out")


def test_data_check_fps_only_for_frame_formats(tmp_path, capsys):
    (tmp_path / "intervals.csv").write_text("video,label,start_s,end_s\na.mp4,fight,1,2\n")
    assert main(["data", "check", str(tmp_path), "--format", "intervals", "--fps", "25"]) == 2
    assert "--fps (> 0) is for ucf-crime and xd-violence" in capsys.readouterr().err
