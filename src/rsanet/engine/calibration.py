"""The clips int8 inference is calibrated on: a training split, read as evaluation reads
it (centre crops), at evenly spaced indices."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from rsanet.engine.config import Config, config_from_dict, load_config
from rsanet.engine.loaders import build_split

#: clips int8 is calibrated on by default
CALIBRATION_CLIPS = 32


class CalibrationError(ValueError):
    """No data to calibrate on (the message names the option that gives some)."""


def training_clips(
    config: Config, *, frames: int, size: int | None = None, clips: int | None = None
) -> Iterable[torch.Tensor]:
    """``clips`` clips (default :data:`CALIBRATION_CLIPS`) (n, 3, frames, S, S) of the
    training split of ``config``'s data, at crop side ``size`` (default: the config's)."""
    from rsanet.inference.int8 import calibration_batches

    data = config.data if size is None else dataclasses.replace(config.data, size=size)
    dataset = build_split(data, "train", train=False, num_frames=frames)
    return calibration_batches(dataset, clips or CALIBRATION_CLIPS)


def checkpoint_calibration(
    config_path: str | Path | None = None, clips: int | None = None
) -> Callable[[Any, int], Iterable[torch.Tensor]]:
    """The calibration ``(classifier, size) ->`` clips for
    :meth:`rsanet.inference.Predictor.from_checkpoint`: the training split of the YAML
    config ``config_path`` (``--calibration``) or, by default, of the checkpoint's own
    training config, at the classifier's clip length and crop ``size``. CalibrationError
    when there is no config to calibrate from."""

    def calibration(classifier: Any, size: int) -> Iterable[torch.Tensor]:
        trained = classifier.extra.get("config")
        if config_path:
            config = load_config(config_path)
        elif isinstance(trained, dict):
            config = config_from_dict(trained)
        else:
            raise CalibrationError(
                "int8 needs calibration clips, and this checkpoint holds no training config: "
                "pass --calibration CONFIG (a YAML whose training split has clips like the "
                "cameras')"
            )
        return training_clips(config, frames=classifier.num_frames, size=size, clips=clips)

    return calibration
