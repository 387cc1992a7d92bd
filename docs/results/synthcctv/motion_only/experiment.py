"""The record of one experiment: ``rsanet train`` with every clip's temporal mean
subtracted after normalisation, so that the static scene (ground, planters, marked zone,
and anyone standing still) is gone and only what changes within the window is left.

    python docs/results/synthcctv/motion_only/experiment.py train configs/synthcctv_tsm.yaml \
        --set data.annotations=D/train model.init_from=runs/synthmotion_tsm/best.pt \
        --output OUT

The arguments are those of ``rsanet train``. The clip transforms of the training and
validation sets are wrapped; nothing else changes. It is kept as the record of the run in
``docs/events.md``, not as a feature: it did not help.
"""

import sys

import rsanet.data.datasets as datasets
import rsanet.data.transforms as transforms
import rsanet.data.windows as windows
from rsanet.cli import main

build_transforms = transforms.build_transforms


def motion_only_transforms(**options):
    """The usual transforms, then (C, T, H, W) minus its mean over T."""
    compose = build_transforms(**options)

    def transform(frames, label=-1):
        clip, label = compose(frames, label)
        return clip - clip.mean(dim=-3, keepdim=True), label

    return transform


datasets.build_transforms = motion_only_transforms
windows.build_transforms = motion_only_transforms

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
