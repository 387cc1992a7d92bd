"""``--set`` values that shrink a SynthCCTV configuration to seconds on one core."""

from __future__ import annotations

from pathlib import Path


def tiny_overrides(data: Path) -> list[str]:
    """Train on the recordings in ``data`` for one epoch of two steps: small frames, 1 s
    windows, no SynthMotion checkpoint (``model.init_from=null``), no progress bars."""
    return [
        f"data.annotations={data}",
        "model.init_from=null",  # the SynthMotion job's checkpoint is not made here
        "data.size=32",
        "data.num_frames=4",
        "data.num_workers=0",
        "data.untrimmed.window_s=1.0",
        "data.untrimmed.val_stride_s=1.0",
        "data.untrimmed.windows_per_epoch=8",
        "data.untrimmed.val_fraction=0.25",
        "train.epochs=1",
        "train.batch_size=4",
        "train.num_threads=1",
        "optim.warmup_epochs=0",
        "eval.batch_size=8",
        "log.progress=never",
        "log.tensorboard=false",
    ]
