"""Annotation formats: each benchmark's files as downloaded, class names, malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsanet.data import (
    AnnotationError,
    read_annotations,
    read_diving48,
    read_finegym,
    read_folder,
    read_list,
    read_something_v1,
    read_something_v2,
    something_v2_label_name,
)


def test_something_v1_ids_are_the_sorted_names_and_bad_rows_name_file_and_line(something_v1, media):
    result = read_something_v1(
        something_v1 / "something-something-v1-train.csv",
        something_v1 / "frames",
        labels=something_v1 / "something-something-v1-labels.csv",
    )
    assert result.classes == sorted(media.V1_CLASSES)
    assert [(Path(r.path).name, result.classes[r.label]) for r in result.records] == [
        ("101", "Holding something"),
        ("102", "Pushing something from left to right"),
    ]
    assert [r.source.rsplit(":", 1)[1] for r in result.records] == ["1", "2"]
    where = [bad.path.rsplit(":", 1)[1] for bad in result.bad]
    assert where == ["3", "4"]
    assert "expected '<video id>;<label name>'" in result.bad[0].reason
    assert "'Juggling something' is not a class" in result.bad[1].reason
    assert result.total_rows == 4

    in_file_order = read_something_v1(
        something_v1 / "something-something-v1-train.csv",
        something_v1 / "frames",
        labels=something_v1 / "something-something-v1-labels.csv",
        class_order="file",
    )
    assert in_file_order.classes == media.V1_CLASSES


def test_something_v2_label_is_the_template_without_brackets(something_v2, media):
    assert something_v2_label_name("Putting [something] on [something]") == (
        "Putting something on something"
    )
    result = read_something_v2(
        something_v2 / "something-something-v2-train.json",
        something_v2 / "videos",
        labels=something_v2 / "something-something-v2-labels.json",
    )
    assert result.classes == list(media.V2_LABELS)  # ids from the labels file
    assert [(Path(r.path).name, r.label) for r in result.records] == [
        ("11.webm", 0),
        ("12.webm", 1),
    ]
    reasons = {bad.path.split(":entry ")[1]: bad.reason for bad in result.bad}
    assert set(reasons) == {"2 (id 13)", "3 (id 14)", "4"}
    assert "no 'template'" in reasons["2 (id 13)"]
    assert "'Dancing with [something]' is not a class" in reasons["3 (id 14)"]


def test_read_annotations_finds_the_standard_files_of_a_split(something_v2):
    val = read_annotations("something-v2", something_v2, something_v2 / "videos", split="val")
    assert [Path(r.path).name for r in val.records] == ["21.webm"]
    assert val.records[0].label == 2
    with pytest.raises(AnnotationError, match=r"train.json:entry 2 \(id 13\).*template"):
        read_annotations("something-v2", something_v2, something_v2 / "videos", policy="raise")


def test_missing_label_file_says_how_to_pass_it(tmp_path):
    (tmp_path / "something-something-v1-train.csv").write_text("1;Holding something\n")
    with pytest.raises(FileNotFoundError, match="something-something-v1-labels.csv.*labels="):
        read_annotations("something-v1", tmp_path / "something-something-v1-train.csv", tmp_path)
    with pytest.raises(FileNotFoundError, match="no val annotation file"):
        read_annotations("something-v1", tmp_path, tmp_path, split="val")


def test_invalid_json_names_the_line(tmp_path):
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text('{\n "Holding something": "0",\n oops\n}')
    (tmp_path / "something-something-v2-train.json").write_text("[]")
    with pytest.raises(AnnotationError, match=r"labels.json:3: invalid JSON"):
        read_annotations("something-v2", tmp_path, tmp_path, labels=labels)


def test_diving48_vocabulary_names_and_frame_ranges(tmp_path):
    vocab = [["Back", "15som", "05Twis", "FREE"], ["Forward", "25som", "NoTwis", "PIKE"]]
    (tmp_path / "Diving48_vocab.json").write_text(json.dumps(vocab))
    rows = [
        {"vid_name": "abc_00001", "label": 1, "start_frame": 5, "end_frame": 60},
        {"vid_name": "abc_00002", "label": 2, "start_frame": 0, "end_frame": 10},
        {"vid_name": "abc_00003", "label": 0, "start_frame": 30, "end_frame": 20},
        {"label": 0},
    ]
    (tmp_path / "Diving48_V2_train.json").write_text(json.dumps(rows))
    result = read_diving48(
        tmp_path / "Diving48_V2_train.json",
        tmp_path / "rgb",
        labels=tmp_path / "Diving48_vocab.json",
    )
    assert result.classes == ["Back 15som 05Twis FREE", "Forward 25som NoTwis PIKE"]
    (record,) = result.records
    assert (Path(record.path).name, record.label, record.start_frame, record.end_frame) == (
        "abc_00001.mp4",
        1,
        5,
        60,
    )
    assert [bad.path.split(":entry ")[1] for bad in result.bad] == [
        "1 (abc_00002)",
        "2 (abc_00003)",
        "3",
    ]
    assert "'label' = 2 is not a class id 0..1" in result.bad[0].reason
    assert "not a frame range" in result.bad[1].reason


def test_finegym_categories_and_clip_lists(tmp_path):
    (tmp_path / "gym288_categories.txt").write_text(
        "Clabel: 0; set: 1; Glabel: 1; (VT) round-off, flic-flac with 0.5 turn on\n"
        "Clabel:   1; set:  1; Glabel:   5; (FX) split leap with 1 turn\n"
    )
    (tmp_path / "gym288_train_element_v1.1.txt").write_text(
        "0LtLS9wROrk_E_002407_002435_A_0003_0005 1\nbroken_line\nxyz_E_1_2_A_3_4 7\n"
    )
    result = read_annotations("finegym", tmp_path, tmp_path / "clips")  # gym288 by name
    assert result.classes == [
        "(VT) round-off, flic-flac with 0.5 turn on",
        "(FX) split leap with 1 turn",
    ]
    assert [Path(r.path).name for r in result.records] == [
        "0LtLS9wROrk_E_002407_002435_A_0003_0005.mp4"
    ]
    assert [bad.path.rsplit(":", 1)[1] for bad in result.bad] == ["2", "3"]
    bad_categories = tmp_path / "bad_categories.txt"
    bad_categories.write_text("Clabel: 0; set: 1; Glabel: 1; fine\nnot a category line\n")
    with pytest.raises(AnnotationError, match=r"bad_categories.txt:2: expected 'Clabel"):
        read_finegym(tmp_path / "gym288_train_element_v1.1.txt", tmp_path, labels=bad_categories)


def test_tsn_list_with_class_names_and_malformed_lines(tmp_path):
    (tmp_path / "classes.txt").write_text("alpha\nbeta\ngamma\n")
    (tmp_path / "train.txt").write_text(
        "videos/a.mp4 30 2\nframes/b 12 0\n\nonly_two 3\nframes/c x 1\nframes/d 5 9\n"
    )
    result = read_annotations("list", tmp_path / "train.txt", tmp_path / "data")
    assert result.classes == ["alpha", "beta", "gamma"]
    assert [(r.path, r.num_frames, r.label) for r in result.records] == [
        (str(tmp_path / "data" / "videos/a.mp4"), 30, 2),
        (str(tmp_path / "data" / "frames/b"), 12, 0),
    ]
    assert [(bad.path.rsplit(":", 1)[1], bad.reason.split(" ")[0]) for bad in result.bad] == [
        ("4", "expected"),
        ("5", "num_frames"),
        ("6", "label"),
    ]
    assert "0..2" in result.bad[2].reason
    unnamed = read_list(tmp_path / "train.txt", tmp_path)  # no class file given
    assert unnamed.classes == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


def test_folder_of_class_folders_with_split_subfolders(tmp_path):
    for split in ("train", "val"):
        for name in ("waving", "clapping"):
            (tmp_path / split / name).mkdir(parents=True)
        (tmp_path / split / "waving" / "a.mp4").write_bytes(b"x")
        (tmp_path / split / "clapping" / "b.webm").write_bytes(b"x")
        (tmp_path / split / "clapping" / "frames_c").mkdir()
        (tmp_path / split / "clapping" / "notes.txt").write_text("ignored")
    result = read_annotations("folder", None, tmp_path, split="val")
    assert result.classes == ["clapping", "waving"]
    assert [(Path(r.path).relative_to(tmp_path).as_posix(), r.label) for r in result.records] == [
        ("val/clapping/b.webm", 0),
        ("val/clapping/frames_c", 0),
        ("val/waving/a.mp4", 1),
    ]
    with pytest.raises(AnnotationError, match="no class folders"):
        read_folder(tmp_path / "train" / "clapping" / "frames_c")
