"""Parameters and multiply-accumulates of one clip, per stage (needs ``fvcore``).

Counting convention (the paper's, see ``docs/models.md``):

* fvcore traces the model on one clip (1, 3, T, S, S) and counts one multiply-accumulate
  per multiply-add of convolutions, linear layers, matmuls and einsums.
* BatchNorm is not counted (it folds into the preceding convolution at inference; fvcore
  documents ``set_op_handle("aten::batch_norm", None)`` for this). With it, fvcore would
  add 2 per element of every BatchNorm input (``count_norm=True``).
* ``aten::scaled_dot_product_attention`` (which fvcore 0.1.5 does not know) is counted as
  the two matrix products it stands for, q k^T and (attention) v: B * heads * Lq * Lk *
  (d_qk + d_v) MACs, as fvcore counts the same products written as matmuls or einsums;
  the softmax is not counted. LayerNorm keeps fvcore's count (5 per element), as in the
  transformer papers' figures.
* A module with an ``official_macs(frames, height, width)`` method (the RSA layer; or a
  ``macs`` method of the same signature) is counted as a unit with that method, at the
  (T, H, W) of its input: RSA's fast path computes the same function in a different order
  of operations (fewer MACs) than the authors' code, whose order defines the paper's FLOPs.
  Such a module is traced as a stand-in returning zeros of its output shape, so nothing
  inside it is counted twice.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rsanet.models.builder import create_model

logger = logging.getLogger(__name__)

#: order of the rows of the per-stage table
STEM = ("conv1", "bn1", "relu", "maxpool")


@dataclass
class StageProfile:
    """One row of the per-stage table: params, MACs and output shape (batch 1)."""

    name: str
    params: int
    macs: int
    output_shape: tuple[int, ...] | None = None

    @property
    def gflops(self) -> float:
        return self.macs / 1e9


@dataclass
class ModelProfile:
    """Parameters and MACs of one clip (1, 3, frames, size, size)."""

    model: str
    frames: int
    size: int
    num_classes: int
    params: int
    macs: int
    stages: list[StageProfile] = field(default_factory=list)
    #: modules counted as units with ``official_macs``: name -> MACs
    unit_macs: dict[str, int] = field(default_factory=dict)
    count_norm: bool = False

    @property
    def gflops(self) -> float:
        """Giga multiply-accumulates of one clip (the papers' "GFLOPs")."""
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["gflops"] = self.gflops
        for row, stage in zip(out["stages"], self.stages, strict=True):
            row["gflops"] = stage.gflops
            row["output_shape"] = list(stage.output_shape) if stage.output_shape else None
        return out

    def table(self) -> str:
        """The per-stage table as aligned text."""
        lines = [
            f"{self.model}: {self.frames} x {self.size} x {self.size} clip, "
            f"{self.num_classes} classes",
            f"{'stage':<8} {'params':>12} {'GFLOPs':>10}  output",
        ]
        for s in self.stages:
            shape = "x".join(str(d) for d in s.output_shape[1:]) if s.output_shape else "-"
            lines.append(f"{s.name:<8} {s.params:>12,} {s.gflops:>10.3f}  {shape}")
        lines.append(f"{'total':<8} {self.params:>12,} {self.gflops:>10.3f}")
        lines.append(
            f"params {self.mparams:.1f}M, GFLOPs {self.gflops:.1f} "
            "(multiply-accumulates of one clip)"
        )
        return "\n".join(lines)


def _no_macs(_inputs: list, _outputs: list) -> int:
    return 0


def sdpa_macs(inputs: list, _outputs: list) -> int:
    """fvcore handle of ``aten::scaled_dot_product_attention(q, k, v, ...)``: the MACs of
    q k^T and of (attention) v, q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv)."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(value) for value in inputs[:3])
    batch = 1
    for size in q[:-2]:
        batch *= int(size)
    lq, d = int(q[-2]), int(q[-1])
    lk, dv = int(k[-2]), int(v[-1])
    return batch * lq * lk * (d + dv)


def _unit_shapes(
    model: nn.Module, clip: torch.Tensor, names: list[str]
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None:
    """Input and output shapes of the modules ``names`` in ``model(clip)``, from a run of
    a copy of the model on the meta device (shapes only, no computation); None if the
    model cannot run there."""
    if not names:
        return {}
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(name: str):
        def hook(_module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            shapes.setdefault(name, (tuple(args[0].shape), tuple(out.shape)))

        return hook

    try:
        meta = copy.deepcopy(model).to("meta").eval()
        modules = dict(meta.named_modules())
        for name in names:
            modules[name].register_forward_hook(record(name))
        with torch.no_grad():
            meta(clip.to("meta"))
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as error:
        # the slow path (tracing every layer) follows: say why, for whoever wonders
        logger.debug("shapes from a meta-device run failed: %s: %s", type(error).__name__, error)
        return None
    return shapes


def _zeros_of_shape(shape: tuple[int, ...]):
    """A forward that returns zeros of ``shape`` (the layer's cost is a formula)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(shape)

    return forward


#: methods ``(frames, height, width) -> MACs of one clip`` that make a module a unit
UNIT_METHODS = ("official_macs", "macs")


def _unit_method(module: nn.Module):
    for name in UNIT_METHODS:
        method = getattr(module, name, None)
        if callable(method):
            return method
    return None


def _unit_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Outermost modules with an ``official_macs`` (or ``macs``) method, by name."""
    units: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if _unit_method(module) is not None:
            if not any(name.startswith(u + ".") for u in units):
                units[name] = module
    return units


def count_macs(
    model: nn.Module, clip: torch.Tensor, *, count_norm: bool = False
) -> tuple[int, dict[str, int], dict[str, int], dict[str, tuple[int, ...]]]:
    """MACs of ``model(clip)`` by the convention of this module.

    Returns (total, per-module MACs after the unit replacement (every module name, ""
    for the whole model), unit module name -> its ``official_macs``, top-level child name
    -> output shape).
    """
    with warnings.catch_warnings():  # fvcore's import scripts functions with torch.jit
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

    units = _unit_modules(model)
    unit_shapes = _unit_shapes(model, clip, list(units))
    unit_inputs: dict[str, tuple[int, ...]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []

    def record_input(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            unit_inputs.setdefault(name, tuple(int(d) for d in args[0].shape))

        return hook

    def record_output(name: str):
        def hook(_module: nn.Module, _args: tuple, out: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(int(d) for d in out.shape))

        return hook

    was_training = model.training
    try:
        for name, module in units.items():
            hooks.append(module.register_forward_pre_hook(record_input(name)))
            if unit_shapes and name in unit_shapes:
                # the real layer is not run: fvcore only needs a tensor of the right shape
                module.forward = _zeros_of_shape(unit_shapes[name][1])
        for name, child in model.named_children():
            hooks.append(child.register_forward_hook(record_output(name)))
        analysis = FlopCountAnalysis(model.eval(), (clip,))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_macs)
        if not count_norm:
            # (fvcore 0.1.5 keeps counting an op whose handle is set to None: give it 0)
            analysis.set_op_handle("aten::batch_norm", _no_macs)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            by_module = {k: int(v) for k, v in analysis.by_module().items()}
    finally:
        for hook in hooks:
            hook.remove()
        for module in units.values():
            module.__dict__.pop("forward", None)
        model.train(was_training)

    unit_macs = {}
    for name, module in units.items():
        if name not in unit_inputs:
            continue  # not called
        n, _, t, h, w = unit_inputs[name]
        unit_macs[name] = n * int(_unit_method(module)(t, h, w))
    # replace what fvcore counted inside each unit by its official figure, in the unit
    # and in all its ancestors
    adjusted = dict(by_module)
    for name, macs in unit_macs.items():
        delta = macs - by_module.get(name, 0)
        parts = name.split(".")
        for i in range(len(parts) + 1):
            ancestor = ".".join(parts[:i])
            adjusted[ancestor] = adjusted.get(ancestor, 0) + delta
        for sub in by_module:
            if sub.startswith(name + "."):
                adjusted[sub] = 0
    return adjusted[""], adjusted, unit_macs, shapes


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def profile_model(
    model: str | nn.Module,
    *,
    frames: int = 8,
    size: int = 224,
    num_classes: int = 174,
    count_norm: bool = False,
    **overrides: Any,
) -> ModelProfile:
    """Parameters and MACs of ``model`` (a registered name, built with ``num_classes``,
    ``num_frames=frames`` and ``overrides``, or a module) on one clip
    (1, 3, frames, size, size), with a per-stage table (stem, layer1..4, head; or the rows
    of the model's ``profile_rows()``, name -> module names, then head)."""
    if isinstance(model, str):
        name = model
        model = create_model(name, num_classes=num_classes, num_frames=frames, **overrides)
    else:
        name = getattr(model, "model_name", type(model).__name__)
        num_classes = getattr(model, "num_classes", num_classes)
    in_chans = getattr(model, "in_chans", 3)
    clip = torch.zeros(1, in_chans, frames, size, size)
    total, per_module, unit_macs, shapes = count_macs(model, clip, count_norm=count_norm)

    children = dict(model.named_children())
    stage_names = [n for n in children if n.startswith("layer")]
    rows = []
    custom = getattr(model, "profile_rows", None)
    if callable(custom):
        stage_names = []
        for row, names in custom().items():
            modules = [model.get_submodule(n) for n in names]
            rows.append(
                StageProfile(
                    row,
                    sum(_params(m) for m in modules),
                    sum(per_module.get(n, 0) for n in names),
                    None,
                )
            )
    elif all(n in children for n in STEM[:1]):
        stem = [n for n in STEM if n in children]
        rows.append(
            StageProfile(
                "stem",
                sum(_params(children[n]) for n in stem),
                sum(per_module.get(n, 0) for n in stem),
                shapes.get(stem[-1]),
            )
        )
    for n in stage_names:
        rows.append(StageProfile(n, _params(children[n]), per_module.get(n, 0), shapes.get(n)))
    head_params = _params(model) - sum(r.params for r in rows)
    head_macs = total - sum(r.macs for r in rows)
    head_shape = (1, num_classes) if num_classes else None
    # with custom rows, the last one also holds the tokens, position embeddings and norm
    head_name = "other" if callable(custom) else "head"
    rows.append(StageProfile(head_name, head_params, head_macs, head_shape))
    return ModelProfile(
        model=name,
        frames=frames,
        size=size,
        num_classes=num_classes,
        params=_params(model),
        macs=total,
        stages=rows,
        unit_macs=unit_macs,
        count_norm=count_norm,
    )
