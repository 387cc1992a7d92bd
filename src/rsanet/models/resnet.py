"""TSN-style ResNets on clips (N, 3, T, H, W) with a placement spec for the transforms.

Every convolution of the backbone is 1 x k x k (1x1x1, 1x3x3, the 1x7x7 stem), so frames
only interact inside the *transforms* that the placement spec puts in place of chosen
blocks' 3x3 convolution (``conv2``): RSA, local self-attention, a 3x3x3 convolution or a
temporal shift followed by a 1x3x3 convolution (see :func:`rsanet.layers.build_transform`).
TSM's residual shift (a temporal shift at the start of a block's residual branch, before
``conv1``) is a separate per-block option.

Module names follow torchvision's ResNet (``conv1, bn1, layer1..layer4``, blocks with
``conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/.1``, classifier ``fc``) so that ImageNet
checkpoints and the authors' RSANet checkpoints map onto ours key by key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from rsanet.layers import TRANSFORMS, TemporalShift, build_transform

#: per stage, the indices of the blocks concerned, or "all" (every block of every stage)
Positions = str | Sequence[Sequence[int]]

#: the paper's RSA positions in ResNet-50 (blocks per stage: 3, 4, 6, 3)
RSA_R50_POSITIONS: tuple[tuple[int, ...], ...] = ((2,), (1, 3), (1, 3, 5), (1,))

DEFAULT_TRANSFORM = "conv2d"


def expand_positions(
    spec: Positions | bool | None, layers: Sequence[int], what: str
) -> list[set[int]]:
    """Per stage, the set of block indices named by ``spec``.

    ``spec`` is ``"all"`` (or True), None/False (no block), or one sequence of block indices
    per stage, e.g. ``[[2], [1, 3], [1, 3, 5], [1]]``. Raises ValueError naming ``what``
    when the spec has the wrong number of stages or an index outside a stage.
    """
    if spec is None or spec is False:
        return [set() for _ in layers]
    if spec is True or spec == "all":
        return [set(range(n)) for n in layers]
    if isinstance(spec, str):
        raise ValueError(
            f"{what} must be 'all' or one list of block indices per stage, got {spec!r}"
        )
    stages = list(spec)
    if len(stages) != len(layers):
        raise ValueError(
            f"{what} must give one list of block indices per stage ({len(layers)} stages with "
            f"{list(layers)} blocks), got {len(stages)}: {spec!r}"
        )
    expanded = []
    for stage, (indices, blocks) in enumerate(zip(stages, layers, strict=True)):
        if isinstance(indices, int) or isinstance(indices, str):
            raise ValueError(
                f"{what}: stage {stage + 1} needs a list of block indices, got {indices!r}"
            )
        chosen = set()
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < blocks:
                raise ValueError(
                    f"{what}: stage {stage + 1} has blocks 0..{blocks - 1}, got index {index!r}"
                )
            chosen.add(index)
        expanded.append(chosen)
    return expanded


def stochastic_depth_rates(num_blocks: int, max_rate: float) -> list[float]:
    """Drop probability of each block: ``max_rate * i / (num_blocks - 1)`` for block i,
    rising linearly from 0 (first block) to ``max_rate`` (last block)."""
    if not 0.0 <= max_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {max_rate!r}")
    if num_blocks == 1:
        return [0.0]
    return [max_rate * i / (num_blocks - 1) for i in range(num_blocks)]


class DropPath(nn.Module):
    """Stochastic depth on a residual branch: (N, ...) -> (N, ...).

    In training, each sample's branch is zeroed with probability ``drop_prob`` and kept
    branches are scaled by 1 / (1 - drop_prob), so the expectation is unchanged; in
    evaluation it is the identity.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob!r}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4g}"


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv3d:
    """1x1x1 convolution with a spatial stride: (N, C, T, H, W) -> (N, C', T, H/s, W/s)."""
    return nn.Conv3d(in_channels, out_channels, 1, (1, stride, stride), bias=False)


def conv1x3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """The 1x3x3 convolution of the TSN backbone (``build_transform('conv2d', ...)``)."""
    return build_transform(DEFAULT_TRANSFORM, in_channels, out_channels, stride)


class _Block(nn.Module):
    """What both residual blocks share: the optional temporal shift before the residual
    branch, stochastic depth on the branch, the shortcut and the final ReLU."""

    expansion = 1

    def _finish_init(
        self,
        downsample: nn.Module | None,
        transform: str,
        shift_fold_div: int | None,
        drop_path: float,
    ) -> None:
        self.downsample = downsample
        self.transform = transform
        self.shift = TemporalShift(shift_fold_div) if shift_fold_div else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        branch = self.residual(self.shift(x) if self.shift is not None else x)
        return self.relu(self.drop_path(branch) + shortcut)


class BasicBlock(_Block):
    """Two 3x3 convolutions (ResNet-18/34): (N, C, T, H, W) -> (N, planes, T, H/s, W/s).

    The stride is on ``conv1``; the placement spec replaces ``conv2`` (never strided).
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        transform: str = DEFAULT_TRANSFORM,
        transform_options: Mapping | None = None,
        shift_fold_div: int | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = build_transform(transform, planes, planes, 1, **(transform_options or {}))
        self.bn2 = nn.BatchNorm3d(planes)
        self._finish_init(downsample, transform, shift_fold_div, drop_path)

    @property
    def last_bn(self) -> nn.BatchNorm3d:
        return self.bn2

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_Block):
    """1x1 -> 3x3 (or the transform) -> 1x1 (ResNet-50/101):
    (N, C, T, H, W) -> (N, 4 * planes, T, H/s, W/s). The stride is on ``conv2``, as in
    torchvision and the authors' network; ``bn2`` follows whatever ``conv2`` is."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        transform: str = DEFAULT_TRANSFORM,
        transform_options: Mapping | None = None,
        shift_fold_div: int | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = build_transform(transform, planes, planes, stride, **(transform_options or {}))
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self._finish_init(downsample, transform, shift_fold_div, drop_path)

    @property
    def last_bn(self) -> nn.BatchNorm3d:
        return self.bn3

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


BLOCKS: dict[str, type[_Block]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def check_clip(x: torch.Tensor, model_name: str, in_chans: int, num_frames: int) -> None:
    """Raise ValueError, with an example of the expected shape, unless ``x`` is a clip
    (N, in_chans, T, H, W) for the network ``model_name``."""
    if x.dim() != 5 or x.shape[1] != in_chans:
        raise ValueError(
            f"{model_name} expects clips (N, {in_chans}, T, H, W) with {in_chans} colour "
            f"channels (e.g. (1, {in_chans}, {num_frames}, 224, 224)), got {tuple(x.shape)}"
        )


class ResNetTSN(nn.Module):
    """A TSN ResNet on clips: (N, in_chans, T, H, W) -> logits (N, num_classes).

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        layers: blocks per stage, e.g. (3, 4, 6, 3).
        num_classes: classifier outputs; 0 for no classifier (``forward`` returns the
            pooled features (N, num_features)).
        num_frames: the clip length T the model is built for (recorded in its config,
            used by profiling and export); the network itself accepts any T >= 1.
        widths: ``planes`` of each stage (64, 128, 256, 512 for the standard ResNets).
        stem_width: channels of the 1x7x7 stride-(1, 2, 2) stem convolution.
        in_chans: colour channels of the clip.
        placement: transform name -> positions (one list of block indices per stage, or
            "all"): those blocks' 3x3 convolution ``conv2`` is built by
            ``build_transform(name, planes, planes, stride, **transform_options[name])``.
            Blocks not named keep a 1x3x3 convolution.
        transform_options: transform name -> keyword options of that transform.
        temporal_shift: positions (or "all"/True) of blocks whose residual branch starts
            with a temporal shift of 1/``shift_fold_div`` of the channels each way (TSM's
            residual shift).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the last block; block i of B has drop
            probability ``drop_path_rate * i / (B - 1)``.
        context_frames: K >= 1 makes the first K frames of every clip the scene's recent
            past (K frames spread over the ``context_s`` seconds before the window, as the
            untrimmed readers and the streams build such clips): the stem then reads the
            window's T - K frames, plus, through a second convolution of the stem's shape
            (``background_conv``, started at zero), each frame's difference from the
            per-pixel median of the K (the lower middle value for an even K, as
            ``torch.median``). A bag set down, a bag taken or a fallen person shows there
            as a difference. 0 (default): every frame is the window's.
        context_s: seconds before the window that the context frames cover (recorded for
            whoever builds the clips; the network does not read time).
        zero_init_residual: start every residual branch's last BatchNorm at zero scale.
        model_name: the registered name (used in error messages and checkpoints).

    The head averages each frame's feature map over space, applies dropout and the linear
    classifier ``fc`` to every frame, and averages the frames' logits.
    """

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        *,
        num_classes: int = 1000,
        num_frames: int = 8,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        in_chans: int = 3,
        placement: Mapping[str, Positions] | None = None,
        transform_options: Mapping[str, Mapping] | None = None,
        temporal_shift: Positions | bool | None = None,
        shift_fold_div: int = 8,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        context_frames: int = 0,
        context_s: float = 8.0,
        zero_init_residual: bool = True,
        model_name: str = "ResNetTSN",
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        layers = tuple(int(n) for n in layers)
        widths = tuple(int(w) for w in widths)
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ValueError(
                f"layers and widths need one positive entry per stage, got layers={layers}, "
                f"widths={widths}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        if isinstance(context_frames, bool) or not isinstance(context_frames, int):
            raise ValueError(f"context_frames must be an integer >= 0, got {context_frames!r}")
        if not 0 <= context_frames < num_frames:
            raise ValueError(
                f"context_frames must be in [0, num_frames) (num_frames={num_frames} counts "
                f"the context frames too), got {context_frames}"
            )
        if not float(context_s) > 0:
            raise ValueError(f"context_s must be a positive number of seconds, got {context_s!r}")
        block_cls = BLOCKS[block]
        self.model_name = model_name
        self.block = block
        self.layers = layers
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.context_frames, self.context_s = context_frames, float(context_s)
        self.drop_rate = drop_rate
        self.num_features = widths[-1] * block_cls.expansion

        transform_at = self._resolve_placement(placement, transform_options, layers)
        shifted = expand_positions(temporal_shift, layers, "temporal_shift")
        options = {name: dict(opts) for name, opts in (transform_options or {}).items()}
        drop_paths = stochastic_depth_rates(sum(layers), drop_path_rate)

        self.conv1 = nn.Conv3d(in_chans, stem_width, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))

        in_channels = stem_width
        block_index = 0
        for stage, (blocks, planes) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if stage == 0 else 2
            stage_blocks = []
            for i in range(blocks):
                s = stride if i == 0 else 1
                downsample = None
                if s != 1 or in_channels != planes * block_cls.expansion:
                    downsample = nn.Sequential(
                        conv1x1(in_channels, planes * block_cls.expansion, s),
                        nn.BatchNorm3d(planes * block_cls.expansion),
                    )
                name = transform_at[stage].get(i, DEFAULT_TRANSFORM)
                stage_blocks.append(
                    block_cls(
                        in_channels,
                        planes,
                        s,
                        downsample,
                        transform=name,
                        transform_options=options.get(name),
                        shift_fold_div=shift_fold_div if i in shifted[stage] else None,
                        drop_path=drop_paths[block_index],
                    )
                )
                in_channels = planes * block_cls.expansion
                block_index += 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*stage_blocks))

        self.head_drop = nn.Dropout(drop_rate)
        self.fc = self._make_classifier(num_classes)
        self._init_weights(zero_init_residual)
        if context_frames:  # at zero: the network starts as the one without a background
            conv = self.conv1
            self.background_conv = nn.Conv3d(
                in_chans, stem_width, conv.kernel_size, conv.stride, conv.padding, bias=False
            )
            nn.init.zeros_(self.background_conv.weight)

    # -- construction -------------------------------------------------------------------

    @staticmethod
    def _resolve_placement(
        placement: Mapping[str, Positions] | None,
        transform_options: Mapping[str, Mapping] | None,
        layers: Sequence[int],
    ) -> list[dict[int, str]]:
        """Per stage, block index -> transform name (only the non-default ones)."""
        at: list[dict[int, str]] = [{} for _ in layers]
        for name, spec in (placement or {}).items():
            if name not in TRANSFORMS:
                raise ValueError(
                    f"placement names unknown transform {name!r}; known: {sorted(TRANSFORMS)}"
                )
            for stage, indices in enumerate(expand_positions(spec, layers, f"placement[{name!r}]")):
                for index in indices:
                    if index in at[stage] and at[stage][index] != name:
                        raise ValueError(
                            f"placement puts both {at[stage][index]!r} and {name!r} at block "
                            f"{index} of stage {stage + 1}"
                        )
                    at[stage][index] = name
        for name in transform_options or {}:
            if name not in TRANSFORMS:
                raise ValueError(
                    f"transform_options names unknown transform {name!r}; "
                    f"known: {sorted(TRANSFORMS)}"
                )
        return at

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.xavier_uniform_(fc.weight)
        nn.init.zeros_(fc.bias)
        return fc

    def _init_weights(self, zero_init_residual: bool) -> None:
        """Kaiming (fan out) for every 3-D convolution (those inside the transforms
        included, as in the authors' network), unit BatchNorms; the transforms' other
        parameters keep their own initialisation."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for b in self.blocks():
                nn.init.zeros_(b.last_bn.weight)

    # -- introspection ------------------------------------------------------------------

    def stages(self) -> list[nn.Sequential]:
        """The residual stages ``layer1, layer2, ...``."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.layers))]

    def blocks(self) -> list[_Block]:
        """Every residual block, in order."""
        return [b for stage in self.stages() for b in stage]

    def named_blocks(self) -> list[tuple[str, _Block]]:
        """(``"layer{s}.{i}"``, block) for every residual block, in order."""
        return [
            (f"layer{s + 1}.{i}", b)
            for s, stage in enumerate(self.stages())
            for i, b in enumerate(stage)
        ]

    def placement(self) -> dict[str, list[list[int]]]:
        """Transform name -> block indices per stage, for every transform in the network
        (the default 1x3x3 convolution included)."""
        out: dict[str, list[list[int]]] = {}
        for s, stage in enumerate(self.stages()):
            for i, b in enumerate(stage):
                out.setdefault(b.transform, [[] for _ in self.layers])[s].append(i)
        return out

    # -- forward ------------------------------------------------------------------------

    def check_clip(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is a clip (N, in_chans, T, H, W), with more than
        ``context_frames`` frames."""
        check_clip(x, self.model_name, self.in_chans, self.num_frames)
        if x.shape[2] <= self.context_frames:
            raise ValueError(
                f"{self.model_name} reads its first {self.context_frames} frames as context "
                f"and needs window frames after them (e.g. {self.num_frames} in all), got "
                f"{x.shape[2]}"
            )

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, in_chans, T, H, W) -> (N, C, T - K, H/4, W/4), K = ``context_frames``:
        convolution (plus ``background_conv`` of the window frames' difference from the
        context's per-pixel median, when K > 0), batch norm, ReLU, max pooling."""
        count = self.context_frames
        if not count:
            return self.maxpool(self.relu(self.bn1(self.conv1(x))))
        window = x[:, :, count:]
        background = x[:, :, :count].sort(dim=2).values[:, :, (count - 1) // 2 : (count + 1) // 2]
        mixed = self.conv1(window) + self.background_conv(window - background)
        return self.maxpool(self.relu(self.bn1(mixed)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, in_chans, T, H, W) -> feature maps (N, num_features, T - K, H/32, W/32)
        (K = ``context_frames``)."""
        self.check_clip(x)
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature maps (N, C, T, h, w) -> logits (N, num_classes), the average over frames
        of each frame's logits; with ``pre_logits`` the pooled features (N, C) (the average
        over frames and positions, on which ``fc`` acts identically since it is affine)."""
        frames = x.mean(dim=(3, 4)).transpose(1, 2)  # (N, T, C)
        if pre_logits:
            return frames.mean(dim=1)
        return self.fc(self.head_drop(frames)).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (N, in_chans, T, H, W) -> logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))

    # -- timm-style classifier access ---------------------------------------------------

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh classifier for ``num_classes`` (0: none)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.fc = self._make_classifier(num_classes).to(device)
        config = getattr(self, "rsanet_config", None)
        if config is not None:
            config["num_classes"] = num_classes
