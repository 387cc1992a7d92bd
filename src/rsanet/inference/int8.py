"""int8 inference of the ResNet family: convolutions in ONNX Runtime, transforms in PyTorch.

A ResNet of this package (TSN, TSM, RSANet, the transform study's networks) is a chain of
convolutional blocks whose ``conv2`` is either a plain convolution or a *transform* (RSA,
local self-attention). :func:`quantize_resnet` cuts that chain at every transform:

    clip -> [segment 0] -> transform -> [segment 1] -> transform -> ... -> [segment k] -> logits

Each segment (stem, whole blocks, the halves of the blocks around a transform, the head)
is exported to ONNX and quantized statically by ONNX Runtime: per-channel int8 weights,
uint8 activations, scales calibrated on real clips. ONNX Runtime runs it with VNNI int8
kernels; activations stay uint8 from one convolution to the next inside a segment
(ReLUs folded into the convolutions' ranges, residual additions quantized). Two
choices suit ONNX Runtime's kernels (measured in ``docs/performance.md``): the stem runs
as 2-D operators over the frames, its convolution in float, and tensors pass between
segments channels-last, the layout of its int8 convolutions. The transforms run between
segments in PyTorch, on their fused kernels (under bfloat16 autocast if asked): ONNX
Runtime has no kernel for their neighbourhood products as fast as ours (see
docs/performance.md). A network without transforms (TSN, TSM, and ``tsm_tiny``, whose shift
and convolution export as they are) is one segment.

``float_from`` (a block, a stage or ``fc``) cuts the chain once more, before that block,
and runs everything from there in PyTorch in float32: the deepest layers, where
quantization noise has built up most, then decide in float (``docs/performance.md``: it
keeps the decisions of SynthCCTV networks that all-int8 changes).

    (N, 3, T, S, S) -> (N, K), like the float network, whose weights are not modified.
"""

from __future__ import annotations

import copy
import io
import logging
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsanet.layers import TemporalShift
from rsanet.models.resnet import ResNetTSN

logger = logging.getLogger("rsanet.inference")

#: the ONNX opset of the segments (as the whole-model export)
OPSET = 17
#: ops quantized: the convolutions and linear layers (int8 weights, uint8 activations), the
#: residual additions (so that a block's output stays uint8), and the ReLUs, which the
#: quantizer removes by giving their input their own non-negative range: each convolution
#: then writes its ReLU's uint8 output directly, instead of a dequantize, a float ReLU and a
#: quantize between two int8 convolutions
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Add", "Relu")
#: convolutions with fewer input channels stay in float: ONNX Runtime's int8 kernels are slow
#: for them (the stem, 3 -> 64 channels at 7 x 7 over 8 frames of 224^2, 2 threads: 22 ms in
#: int8 against 14 ms in float as 2-D convolutions; 72 ms in int8 as a 3-D one)
MIN_QUANTIZED_INPUT_CHANNELS = 8


def is_transform(module: nn.Module) -> bool:
    """Whether a block's ``conv2`` is a transform that stays in PyTorch: anything but a
    convolution, alone or after a temporal shift (the ``tsm`` transform, exported like the
    shifts of a TSM's blocks: ONNX Runtime moves the channels in float, between a
    dequantize and a quantize, and runs the convolution in int8)."""
    if isinstance(module, nn.Sequential):
        return not all(isinstance(m, (TemporalShift, nn.Conv3d)) for m in module)
    return not isinstance(module, nn.Conv3d)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N, T, H, W, C)."""
    return x.permute(0, 2, 3, 4, 1)


def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    """(N, T, H, W, C) -> (N, C, T, H, W)."""
    return x.permute(0, 4, 1, 2, 3)


class _Segment(nn.Module):
    """The float computation between two cuts: finish the block the previous transform is
    in, run whole blocks, then start the block of the next transform. A cut is a transform
    or, at ``float_from``, a plain cut between two blocks (or before the head).

    Inputs: the clip (first segment), (transform output, that block's input), or the
    feature maps (after a plain cut). Outputs: (the next transform's input, its block's
    input), the feature maps (before a plain cut) or the logits (last segment). Tensors
    between segments are channels-last, (N, T, H, W, C): ONNX Runtime's int8 kernels work
    in that layout, so its transposes at the segments' ends cancel, and the RSA layers read
    it directly. ``in_float``: the segment is in the float tail and is not quantized.
    """

    def __init__(
        self,
        model: ResNetTSN,
        *,
        after: nn.Module | None,
        blocks: Sequence[nn.Module],
        before: nn.Module | None,
        stem: bool,
        head: bool,
        in_float: bool = False,
    ) -> None:
        super().__init__()
        self.model = model  # shared, not copied: the segments read the model's weights
        self.after, self.blocks, self.before = after, list(blocks), before
        self.stem, self.head, self.in_float = stem, head, in_float
        # in the model's mode: exporting a segment restores the segment's mode afterwards,
        # recursively, into the shared model (a segment left in training mode would put a
        # float tail's batch norms in training mode)
        self.training = model.training

    @property
    def input_names(self) -> list[str]:
        if self.stem:
            return ["clip"]
        return ["transformed", "block_input"] if self.after is not None else ["features"]

    @property
    def output_names(self) -> list[str]:
        if self.head:
            return ["logits"]
        return ["transform_input", "block_input_out"] if self.before else ["features_out"]

    @staticmethod
    def _finish(block: nn.Module, transformed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if block.downsample is None else block.downsample(x)
        out = block.relu(block.bn2(transformed))
        if hasattr(block, "conv3"):  # a bottleneck
            out = block.bn3(block.conv3(out))
        return block.relu(out + shortcut)

    @staticmethod
    def _start(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = block.shift(x) if block.shift is not None else x
        return block.relu(block.bn1(block.conv1(x)))

    @staticmethod
    def _stem(model: ResNetTSN, clip: torch.Tensor) -> torch.Tensor:
        """The stem (convolution, batch norm, ReLU, max pooling), all 1 x k x k, over the
        frames as a batch of images: ONNX Runtime's 2-D kernels are the fast ones here."""
        conv, pool = model.conv1, model.maxpool
        three_d = conv.kernel_size[0] != 1 or conv.stride[0] != 1 or pool.kernel_size[0] != 1
        if three_d or getattr(model, "context_frames", 0):
            return model.stem(clip)  # a 3-D stem, or one that also reads a background
        n, _, t = clip.shape[:3]
        frames = clip.transpose(1, 2).flatten(0, 1)  # (N*T, 3, H, W)
        x = F.conv2d(frames, conv.weight[:, :, 0], None, conv.stride[1:], conv.padding[1:])
        bn = model.bn1
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        x = F.max_pool2d(model.relu(x), pool.kernel_size[1:], pool.stride[1:], pool.padding[1:])
        return x.unflatten(0, (n, t)).transpose(1, 2)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        if self.stem:
            (x,) = inputs
            x = self._stem(model, x)
        elif self.after is not None:
            transformed, block_input = (to_channels_first(t) for t in inputs)
            x = self._finish(self.after, transformed, block_input)
        else:
            (features,) = inputs
            x = to_channels_first(features)
        for block in self.blocks:
            x = block(x)
        if self.head:
            return model.forward_head(x)
        if self.before is None:
            return to_channels_last(x)
        return to_channels_last(self._start(self.before, x)), to_channels_last(x)


def transform_layers(model: nn.Module) -> list[str]:
    """The names of the blocks' transforms (``conv2`` that is not a convolution) of a
    ResNet, which int8 leaves in PyTorch."""
    if not isinstance(model, ResNetTSN):
        return []
    return [f"{name}.conv2" for name, block in model.named_blocks() if is_transform(block.conv2)]


def float_tail_start(model: ResNetTSN, name: str) -> str:
    """The block (``layer{s}.{i}``) where the float tail named ``name`` starts: a block, a
    stage (its first block) or ``fc`` (only the head). ValueError naming the choices."""
    blocks = [block_name for block_name, _ in model.named_blocks()]
    stages = sorted({block_name.split(".")[0] for block_name in blocks})
    if name in blocks or name == "fc":
        return name
    if name in stages:
        return f"{name}.0"
    raise ValueError(
        f"{name!r} is not a block of the network: expected a "
        f"stage ({', '.join(stages)}), a block ({blocks[0]} ... {blocks[-1]}) or fc"
    )


def split_at_transforms(
    model: ResNetTSN, float_from: str | None = None
) -> tuple[list[_Segment], list[nn.Module | None]]:
    """The segments of ``model`` and the cuts between them (one fewer): a transform, or
    None for the plain cut before ``float_from`` (:func:`float_tail_start`), from which the
    segments are ``in_float``."""
    start = float_tail_start(model, float_from) if float_from is not None else None
    segments: list[_Segment] = []
    cuts: list[nn.Module | None] = []
    after, run, in_tail = None, [], False

    def close(before: nn.Module | None, head: bool = False) -> None:
        segments.append(
            _Segment(
                model,
                after=after,
                blocks=run,
                before=before,
                stem=not segments,
                head=head,
                in_float=in_tail,
            )
        )

    for name, block in [*model.named_blocks(), ("fc", None)]:
        if name == start:  # a plain cut: the float tail starts here
            close(None)
            cuts.append(None)
            after, run, in_tail = None, [], True
        if block is None:  # the head
            break
        if is_transform(block.conv2):
            close(block)
            cuts.append(block.conv2)
            after, run = block, []
        else:
            run.append(block)
    close(None, head=True)
    return segments, cuts


class _SegmentedResNet(nn.Module):
    """Run ``segments`` and the ``cuts`` between them alternately; each segment may be
    replaced by a callable on numpy arrays (an ONNX Runtime session). A cut is a transform,
    run under autocast to ``transform_dtype`` if given (RSA then computes its projection and
    filters in it) unless it follows a segment of the float tail (``in_float``: float32),
    or None (the segment's features pass on as they are)."""

    def __init__(
        self,
        segments: Sequence,
        cuts: Sequence[nn.Module | None],
        transform_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.segments = list(segments)
        self.cuts = list(cuts)
        self.transforms = nn.ModuleList(cut for cut in cuts if cut is not None)
        self.transform_dtype = transform_dtype
        # an ONNX Runtime session is never in the float tail
        self.in_float = [getattr(segment, "in_float", False) for segment in self.segments]

    def _transform(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """(N, T, H, W, C) -> (N, T, H, W, C')."""
        dtype = None if self.in_float[index] else self.transform_dtype
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            return to_channels_last(self.cuts[index](to_channels_first(x)).float())

    def forward(self, clip: torch.Tensor, record: list[list] | None = None) -> torch.Tensor | None:
        """``record`` (calibration): one list per segment, to which the inputs of each
        segment to be quantized are appended; the run then stops, returning None, where the
        float tail begins, which is neither quantized nor needed."""
        inputs: tuple[torch.Tensor, ...] = (clip,)
        for index, segment in enumerate(self.segments):
            if record is not None:
                if self.in_float[index]:
                    return None
                record[index].append(tuple(t.detach().clone() for t in inputs))
            outputs = segment(*inputs)
            if index == len(self.cuts):
                return outputs
            if self.cuts[index] is None:
                inputs = (outputs,)
                continue
            transform_input, block_input = outputs
            inputs = (self._transform(index, transform_input), block_input)
        raise AssertionError("unreachable")


class _Session:
    """One quantized segment in ONNX Runtime: tensors in, tensors out."""

    def __init__(self, model_bytes: bytes, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # no busy-waiting between calls: PyTorch computes the transforms on the same cores
        # right after each segment, and a spinning pool (one per segment) would steal them
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            model_bytes, options, providers=["CPUExecutionProvider"]
        )
        self.names = [node.name for node in self.session.get_inputs()]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feeds = {
            name: np.ascontiguousarray(t.detach().float().cpu().numpy())
            for name, t in zip(self.names, inputs, strict=True)
        }
        outputs = [torch.from_numpy(array) for array in self.session.run(None, feeds)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _export_segment(segment: _Segment, example: tuple[torch.Tensor, ...]) -> bytes:
    names, outputs = segment.input_names, segment.output_names
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            segment,
            example,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=outputs,
            do_constant_folding=True,
            dynamic_axes={name: {0: "batch"} for name in names + outputs},
        )
    return buffer.getvalue()


def narrow_convolutions(model_path: Path) -> list[str]:
    """The names of the convolutions of an ONNX model with fewer than
    :data:`MIN_QUANTIZED_INPUT_CHANNELS` input channels per group (the stem), which stay in
    float."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    weights = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "Conv"
        and len(node.input) > 1
        and node.input[1] in weights
        and weights[node.input[1]][1] < MIN_QUANTIZED_INPUT_CHANNELS
    ]


def quantize_onnx(
    model_bytes: bytes, samples: list[tuple[torch.Tensor, ...]], names: list[str]
) -> bytes:
    """An ONNX model (serialised) quantized statically, calibrated on ``samples`` (tuples
    of inputs named ``names``): QDQ, per-channel int8 weights, uint8 activations."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(
                [{n: t.numpy() for n, t in zip(names, sample, strict=True)} for sample in samples]
            )

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="rsanet-int8-") as folder:
        exported, source = Path(folder, "exported.onnx"), Path(folder, "float.onnx")
        target = Path(folder, "int8.onnx")
        exported.write_bytes(model_bytes)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # ONNX Runtime's advice on pre-processing, every call
        try:
            # ONNX Runtime's graph optimisation first: batch norms folded into the
            # convolutions, so that int8 runs from one convolution to the next
            quant_pre_process(str(exported), str(source), skip_symbolic_shape=True)
            quantize_static(
                str(source),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                per_channel=True,
                nodes_to_exclude=narrow_convolutions(source),
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        finally:
            root.setLevel(level)
        return target.read_bytes()


def append_float_tail(int8_bytes: bytes, tail_bytes: bytes) -> bytes:
    """One ONNX model from a quantized head part (clip -> ``features_out``) and the float
    tail after it (``features`` -> logits): the tail's inner names prefixed, so that the
    two exports' names cannot collide."""
    import onnx
    from onnx import compose

    tail = compose.add_prefix(
        onnx.load_model_from_string(tail_bytes),
        "float_tail/",
        rename_inputs=False,
        rename_outputs=False,
    )
    head = onnx.load_model_from_string(int8_bytes)
    merged = compose.merge_models(head, tail, io_map=[("features_out", "features")])
    return merged.SerializeToString()


class Int8ResNet(nn.Module):
    """A ResNet whose segments run in ONNX Runtime int8 and whose transforms run in PyTorch:
    clip (N, 3, T, S, S) -> logits (N, K). Built by :func:`quantize_resnet`; the segments of
    a float tail are PyTorch modules in float32."""

    def __init__(
        self,
        segments: list[_Session | _Segment],
        cuts: Sequence[nn.Module | None],
        transform_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.runner = _SegmentedResNet(segments, cuts, transform_dtype)
        self.segments = len(segments)
        self.quantized_segments = sum(isinstance(s, _Session) for s in segments)

    @torch.inference_mode()
    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.runner(clip)


def quantize_resnet(
    model: nn.Module,
    calibration: Iterable[torch.Tensor],
    *,
    threads: int | None = None,
    transform_dtype: torch.dtype | None = None,
    float_from: str | None = None,
) -> Int8ResNet:
    """``model`` (a :class:`ResNetTSN`) with its segments quantized to int8, calibrated on
    the clips of ``calibration`` (each (n, 3, T, S, S), normalised as the model's input).
    ``transform_dtype`` (e.g. torch.bfloat16): the autocast type of the transforms, also
    while calibrating (None: float32). ``float_from`` (a block ``layer3.5``, a stage
    ``layer4``, or ``fc``): that block and all after it, transforms and head included, run
    in float32 instead.

    TypeError for a model outside the ResNet family; ValueError without calibration clips
    or for a ``float_from`` that is not in the model. ``model`` itself is not modified (the
    transforms are copied).
    """
    if not isinstance(model, ResNetTSN):
        raise TypeError(
            f"int8 runs the ResNet family (TSN, TSM, RSANet), not {type(model).__name__}"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ImportError("int8 needs onnxruntime: pip install 'rsanet[export]'") from error
    model = copy.deepcopy(model).eval()
    segments, cuts = split_at_transforms(model, float_from)
    runner = _SegmentedResNet(segments, cuts, transform_dtype)
    record: list[list] = [[] for _ in segments]
    clips = 0
    with torch.no_grad():
        for clip in calibration:
            runner(clip, record)
            clips += clip.shape[0]
    if not clips:
        raise ValueError("int8 calibration needs at least one clip")
    runnable: list[_Session | _Segment] = []
    for segment, samples in zip(segments, record, strict=True):
        if segment.in_float:
            runnable.append(segment)
            continue
        float_bytes = _export_segment(segment, samples[0])
        int8_bytes = quantize_onnx(float_bytes, samples, segment.input_names)
        runnable.append(_Session(int8_bytes, threads))
    int8 = Int8ResNet(runnable, cuts, transform_dtype)
    logger.info(
        "int8: %d segments in ONNX Runtime, %d in float32 (from %s), %d transforms in "
        "PyTorch, calibrated on %d clips",
        int8.quantized_segments,
        int8.segments - int8.quantized_segments,
        float_from or "-",
        len(int8.runner.transforms),
        clips,
    )
    return int8


def calibration_batches(
    dataset: Sequence, count: int, *, batch_size: int = 4
) -> Iterable[torch.Tensor]:
    """``count`` clips of ``dataset`` (items (clip, label), clip (3, T, S, S) or views
    (V, 3, T, S, S), of which the first is taken) at evenly spaced indices, so that every
    part of an ordered dataset (class by class) is seen; in batches (n, 3, T, S, S)."""
    if count < 1:
        raise ValueError(f"int8 calibration needs at least one clip, got count={count}")
    if len(dataset) == 0:
        raise ValueError("int8 calibration: the calibration dataset is empty")
    indices = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    batch = []
    for index in indices:
        clip = dataset[int(index)][0]
        batch.append(clip[0] if clip.dim() == 5 else clip)
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)
