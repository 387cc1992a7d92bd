"""The arguments several commands share mean the same everywhere, the bounded types refuse
what is out of range, and every command words an OSError the same way."""

from __future__ import annotations

import argparse
import errno

import pytest

from rsanet.atomic import DiskFullError
from rsanet.cli import CLIError, build_parser, main
from rsanet.cli._args import check_positive, count, crop_size, seconds
from rsanet.cli._faults import RUN_FAILED, failure_message, os_error_message


def subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings or a.dest == flag)


@pytest.mark.parametrize(
    "flag, commands",
    [
        ("--set", [("train",), ("eval",), ("study",)]),
        ("--output", [("train",), ("eval",), ("study",)]),
        ("--checkpoint", [("predict",), ("visualize", "kernels")]),
        ("--size", [("predict",), ("visualize", "kernels")]),
        ("--json", [("eval",), ("profile",)]),
        ("--frames", [("demo",), ("profile",)]),
    ],
)
def test_a_shared_flag_is_the_same_flag_everywhere(flag, commands):
    actions = [option(subparser(*command), flag) for command in commands]
    first = actions[0]
    for action in actions[1:]:
        assert action.option_strings == first.option_strings
        assert action.dest == first.dest and action.metavar == first.metavar
    if flag in ("--checkpoint", "--size"):  # same meaning, same words
        assert {action.help for action in actions} == {first.help}
    assert all(action.help for action in actions)


def test_defaults_stay_per_command():
    assert option(subparser("demo"), "--size").default == 64
    assert option(subparser("profile"), "--size").default == 224
    assert option(subparser("profile"), "--num-classes").default == 174
    assert option(subparser("train"), "--set").default == []


def test_bounded_types():
    assert seconds(10.0)("2.5") == 2.5
    for text in ("0", "-1", "nan", "inf", "11", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            seconds(10.0)(text)
    assert count(1, 5)("5") == 5
    for text in ("0", "6", "1.5", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            count(1, 5)(text)


def test_positive_checks_and_the_crop_size():
    check_positive(argparse.Namespace(frames=None, size=1), "frames", "size")
    with pytest.raises(CLIError, match="^--num-classes must be a positive integer, got 0$"):
        check_positive(argparse.Namespace(num_classes=0), "num_classes")
    assert crop_size(None, None) == 224 and crop_size(None, 112) == 112 and crop_size(64, 112) == 64


def test_an_os_error_is_worded_once_for_every_command():
    error = PermissionError(errno.EACCES, "Permission denied", "/data/out")
    assert os_error_message(error) == "/data/out: Permission denied"
    assert os_error_message(OSError("a\n  lost   device")) == "a lost device"
    assert failure_message(error, "hint") == os_error_message(error)  # train, eval, export


@pytest.mark.parametrize(
    "error, code",
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/out"), 2),
        (DiskFullError(errno.ENOSPC, "No space left on device", "/data/out"), RUN_FAILED),
    ],
)
def test_main_reports_an_os_error_as_one_line(monkeypatch, capsys, error, code):
    import rsanet.cli.profile

    def failing(args):
        raise error

    monkeypatch.setattr(rsanet.cli.profile, "run", failing)
    assert main(["profile", "rsanet_tiny"]) == code
    err = capsys.readouterr().err
    assert err == f"rsanet profile: error: /data/out: {error.strerror}\n"
