"""Fused CPU kernels for RSA: the neighbourhood products of the re-associated order
(``neighbourhood.cpp``), the per-position products of the authors' order and their gradients
(``official.cpp``) and the input gradient of the K_H1 filter (``filter.cpp``), on the
small-GEMM micro-kernel of ``gemm.h``.

Compiled on first use with the system's C++ compiler (``$CXX``, else ``c++``; a few
seconds, no PyTorch headers) into a per-user cache, and called through ctypes with the
arguments named as in :data:`SIGNATURES`. Where it cannot be built or does not apply (no
compiler, not float32 on the CPU, export, ``RSANET_NATIVE=0``), :func:`refusal` says why,
:func:`rsanet.layers.backends.choose_backend` passes it over and the layer computes the same
products with PyTorch operators.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from rsanet.layers import config

SOURCES = [
    Path(__file__).with_name(name) for name in ("neighbourhood.cpp", "official.cpp", "filter.cpp")
]
HEADERS = [Path(__file__).with_name(name) for name in ("lanes.h", "gemm.h")]
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c++17"]

_library: ctypes.CDLL | None = None
_failed = False


# the C++ parameter types of SIGNATURES
TENSOR, INT, INT64 = "tensor", "int", "int64"
_CTYPES = {TENSOR: ctypes.c_void_p, INT: ctypes.c_int, INT64: ctypes.c_int64}
_SHAPE = (
    ("frames", INT),
    ("height", INT),
    ("width", INT),
    ("kt", INT),
    ("kh", INT),
    ("kw", INT),
    ("heads", INT),
    ("channels", INT),
)

# rsa_official_products and its bfloat16 twin (K_H1 and the filtered values in bfloat16)
_OFFICIAL_PRODUCTS = (
    ("queries", TENSOR),
    ("key_summary", TENSOR),
    ("basic", TENSOR),
    ("filtered", TENSOR),
    ("mixing", TENSOR),
    ("out", TENSOR),
    ("positions", INT64),
    ("heads", INT),
    ("keys", INT),
    ("channels", INT),
    ("latent", INT),
    ("width", INT),
    ("threads", INT),
)

#: every C++ entry point with its parameters, named and in declaration order (the .cpp files);
#: a tensor parameter takes a contiguous float32 tensor (bfloat16 where the name says so) or
#: None (a null pointer)
SIGNATURES: dict[str, tuple[tuple[str, str], ...]] = {
    "rsa_aggregate_forward": (
        ("khat", TENSOR),
        ("padded", TENSOR),
        ("aggregated", TENSOR),
        ("correlation", TENSOR),
        *_SHAPE,
        ("threads", INT),
    ),
    "rsa_aggregate_backward": (
        ("khat", TENSOR),
        ("grad_correlation", TENSOR),
        ("aggregated", TENSOR),
        ("grad_aggregated", TENSOR),
        ("padded", TENSOR),
        ("grad_khat", TENSOR),
        ("correlation", TENSOR),
        ("grad_padded", TENSOR),
        *_SHAPE,
        ("threads", INT),
    ),
    "rsa_filter_input_grad": (
        ("grad", TENSOR),
        ("weight", TENSOR),
        ("grad_input", TENSOR),
        ("batch", INT),
        ("frames", INT),
        ("height", INT),
        ("width", INT),
        ("channels", INT),
        ("filters", INT),
        ("kt", INT),
        ("kh", INT),
        ("kw", INT),
        ("threads", INT),
    ),
    "rsa_official_products": _OFFICIAL_PRODUCTS,
    "rsa_official_products_bf16": _OFFICIAL_PRODUCTS,
    "rsa_official_products_backward": (
        *_OFFICIAL_PRODUCTS[:5],
        ("grad_out", TENSOR),
        ("grad_queries", TENSOR),
        ("grad_key_summary", TENSOR),
        ("grad_filtered", TENSOR),
        *_OFFICIAL_PRODUCTS[6:],
    ),
}


def enabled() -> bool:
    """False when ``RSANET_NATIVE=0`` (see :mod:`rsanet.layers.config`)."""
    return config.native_enabled()


def _cache_dir() -> Path:
    root = os.environ.get("RSANET_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root or Path.home() / ".cache") / "rsanet"


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    # -march=native: the build belongs to this machine, so the machine is in the key
    key = hashlib.sha256(
        b"".join(path.read_bytes() for path in SOURCES + HEADERS)
        + " ".join([compiler, *FLAGS, platform.node()]).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            built = Path(work) / target.name
            result = subprocess.run(
                [compiler, *FLAGS, *map(str, SOURCES), "-o", str(built)],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed:\n{result.stderr[-2000:]}")
            os.replace(built, target)  # atomic: concurrent builders never see half a file
    library = ctypes.CDLL(str(target))
    for function, parameters in SIGNATURES.items():
        getattr(library, function).argtypes = [_CTYPES[kind] for _, kind in parameters]
    return library


def library() -> ctypes.CDLL | None:
    """The compiled kernel, building it on first call; None (with one warning) if it fails."""
    global _library, _failed
    if _library is None and not _failed and sys.platform != "win32":
        try:
            _library = _build()
        except (OSError, RuntimeError) as error:
            _failed = True
            warnings.warn(
                f"rsanet: fused CPU kernel unavailable, using PyTorch operators ({error})",
                RuntimeWarning,
                stacklevel=2,
            )
    return _library


def refusal(op: str, tensors) -> str | None:
    """Why the kernels cannot compute operator ``op`` on these tensors (the operator's
    operands in order, None for an absent optional one), None if they can: they take float32
    CPU tensors (the official products also bfloat16 K_H1 and filtered values, see
    :func:`_official_types_refusal`), and the K_H1 filter gradient channels in eights."""
    if not enabled():
        return f"switched off ({config.NATIVE_SWITCH}=0)"
    present = [t for t in tensors if t is not None]
    for tensor in present:
        if tensor.device.type != "cpu":
            return f"device {tensor.device.type} is not the CPU"
    if op == "official_products":
        reason = _official_types_refusal(*tensors)
        if reason is not None:
            return reason
    else:
        for tensor in present:
            if tensor.dtype != torch.float32:
                return f"dtype {tensor.dtype} not supported (torch.float32 only)"
    if op == "filter_input_grad" and present and present[0].shape[-1] % 8 != 0:
        return f"{present[0].shape[-1]} channels, not a multiple of 8"
    if library() is None:
        return "the C++ kernels could not be built"
    return None


def available(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels can compute on these tensors (all float32 on the CPU)."""
    return refusal("aggregate", tensors) is None


def _call(function: str, **arguments) -> None:
    """Calls C++ ``function`` with its arguments by name (see :data:`SIGNATURES`)."""
    parameters = SIGNATURES[function]
    names = [name for name, _ in parameters]
    if set(arguments) != set(names):
        missing, unexpected = set(names) - set(arguments), set(arguments) - set(names)
        raise TypeError(f"{function}: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    values = [
        _pointer(arguments[name]) if kind == TENSOR else arguments[name]
        for name, kind in parameters
    ]
    getattr(library(), function)(*values)


def _pointer(tensor: torch.Tensor | None) -> int | None:
    if tensor is None:
        return None
    if not tensor.is_contiguous():
        raise ValueError("the fused kernel needs contiguous tensors")
    return tensor.data_ptr()


def _shape(padded: torch.Tensor, kernel_size: tuple[int, int, int], heads: int) -> dict:
    """The sizes of a chunk, named as the C++ parameters of :data:`_SHAPE`."""
    _, tp, hp, wp, dv = padded.shape
    kt, kh, kw = kernel_size
    return dict(
        frames=tp - kt + 1,
        height=hp - kh + 1,
        width=wp - kw + 1,
        kt=kt,
        kh=kh,
        kw=kw,
        heads=heads,
        channels=dv,
    )


def aggregate(
    khat: torch.Tensor,
    padded: torch.Tensor,
    kernel_size: tuple[int, int, int],
    correlation: torch.Tensor | None,
) -> torch.Tensor:
    """khat (P, nh, M) and the padded values of one chunk (1, T+kt-1, H+kh-1, W+kw-1, dv) ->
    A = khat Pv (P, nh, dv); writes A Pv^T into ``correlation`` (P, nh, M) unless None."""
    heads, dv = khat.shape[1], padded.shape[-1]
    aggregated = khat.new_empty(khat.shape[0], heads, dv)
    _call(
        "rsa_aggregate_forward",
        khat=khat,
        padded=padded,
        aggregated=aggregated,
        correlation=correlation,
        **_shape(padded, kernel_size, heads),
        threads=torch.get_num_threads(),
    )
    return aggregated


def aggregate_backward(
    khat: torch.Tensor,
    grad_correlation: torch.Tensor | None,
    aggregated: torch.Tensor,
    grad_aggregated: torch.Tensor,
    padded: torch.Tensor,
    grad_khat: torch.Tensor,
    correlation: torch.Tensor | None,
    grad_padded: torch.Tensor,
    kernel_size: tuple[int, int, int],
) -> None:
    """Backward of :func:`aggregate` in place: ``grad_aggregated`` (in: the basic context's
    part) gets A's whole gradient, ``grad_khat`` and ``correlation`` are written, the values'
    gradient is added onto ``grad_padded``; see ``neighbourhood.cpp``."""
    _call(
        "rsa_aggregate_backward",
        khat=khat,
        grad_correlation=grad_correlation,
        aggregated=aggregated,
        grad_aggregated=grad_aggregated,
        padded=padded,
        grad_khat=grad_khat,
        correlation=correlation,
        grad_padded=grad_padded,
        **_shape(padded, kernel_size, khat.shape[1]),
        threads=torch.get_num_threads(),
    )


def _official_types_refusal(queries, key_summary, basic, filtered, mixing) -> str | None:
    """Why the official products' kernel cannot read these operands' types, None if it can:
    K_H1 and the filtered values both float32 or both bfloat16 (the filters' type in
    reduced-precision inference), everything else float32."""
    for name, tensor in (("queries", queries), ("P1", basic), ("I", mixing)):
        if tensor is not None and tensor.dtype != torch.float32:
            return f"{name} in {tensor.dtype} not supported (torch.float32 only)"
    if filtered.dtype not in (torch.float32, torch.bfloat16):
        return f"filtered values in {filtered.dtype} not supported (float32 or bfloat16 only)"
    if key_summary is not None and key_summary.dtype != filtered.dtype:
        return f"K_H1 ({key_summary.dtype}) and the filtered values ({filtered.dtype}) differ"
    return None


def official_products(
    queries: torch.Tensor,
    key_summary: torch.Tensor | None,
    basic: torch.Tensor | None,
    filtered: torch.Tensor,
    mixing: torch.Tensor | None,
) -> torch.Tensor:
    """The authors' order's per-position products (no autograd): queries (P, nh, dk), K_H1
    (P, dk, D) or None (the basic kernel alone: D = dk), P1 (dk, D) or None, filtered values
    (P, dv, D) = F or (P, dv, D + dv) = [F | V_G] and I (dv, dv) or None -> (P, dv, nh), with
    kernel = q (K_H1 + P1), context = (V_G + I)^T F and y = context kernel^T. K_H1 and the
    filtered values may be bfloat16 (both, read as float32); the rest is float32."""
    reason = _official_types_refusal(queries, key_summary, basic, filtered, mixing)
    if reason is not None:
        raise TypeError(f"official_products: {reason}")
    stored = filtered.dtype
    positions, heads, keys = queries.shape
    channels, width = filtered.shape[1:]
    latent = key_summary.shape[-1] if key_summary is not None else keys
    out = queries.new_empty(positions, channels, heads)
    _call(
        "rsa_official_products_bf16" if stored == torch.bfloat16 else "rsa_official_products",
        queries=queries,
        key_summary=key_summary,
        basic=basic,
        filtered=filtered,
        mixing=mixing,
        out=out,
        positions=positions,
        heads=heads,
        keys=keys,
        channels=channels,
        latent=latent,
        width=width,
        threads=torch.get_num_threads(),
    )
    return out


def official_products_backward(
    grad_out: torch.Tensor,
    queries: torch.Tensor,
    key_summary: torch.Tensor | None,
    basic: torch.Tensor | None,
    filtered: torch.Tensor,
    mixing: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The gradients of :func:`official_products` for the output's gradient (P, dv, nh), all
    float32: those of the queries (P, nh, dk), of K_H1 (P, dk, D; None without K_H1) and of
    the filtered values (P, dv, width). P1's and I's are their sums over the positions (of
    K_H1's and of the V_G part of the filtered values')."""
    positions, heads, keys = queries.shape
    channels, width = filtered.shape[1:]
    grad_queries = torch.empty_like(queries)
    grad_key_summary = torch.empty_like(key_summary) if key_summary is not None else None
    grad_filtered = torch.empty_like(filtered)
    _call(
        "rsa_official_products_backward",
        queries=queries,
        key_summary=key_summary,
        basic=basic,
        filtered=filtered,
        mixing=mixing,
        grad_out=grad_out,
        grad_queries=grad_queries,
        grad_key_summary=grad_key_summary,
        grad_filtered=grad_filtered,
        positions=positions,
        heads=heads,
        keys=keys,
        channels=channels,
        latent=key_summary.shape[-1] if key_summary is not None else keys,
        width=width,
        threads=torch.get_num_threads(),
    )
    return grad_queries, grad_key_summary, grad_filtered


def filter_input_grad(
    grad: torch.Tensor, weight: torch.Tensor, kernel_size: tuple[int, int, int]
) -> torch.Tensor:
    """Input gradient of :func:`rsanet.layers.ops.neighbourhood_filter`: the output's gradient
    (N, T, H, W, C, F) and the filters (C*F, kt, kh, kw) -> (N, T, H, W, C); C a multiple
    of 8 (see :func:`filter_applies`)."""
    n, t, h, w, c, f = grad.shape
    kt, kh, kw = kernel_size
    filters = weight.reshape(c // 8, 8, f, kt * kh * kw).permute(0, 3, 2, 1).contiguous()
    grad_input = grad.new_empty(n, t, h, w, c)
    _call(
        "rsa_filter_input_grad",
        grad=grad,
        weight=filters,
        grad_input=grad_input,
        batch=n,
        frames=t,
        height=h,
        width=w,
        channels=c,
        filters=f,
        kt=kt,
        kh=kh,
        kw=kw,
        threads=torch.get_num_threads(),
    )
    return grad_input


def filter_applies(x: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Whether :func:`filter_input_grad` can take the gradient for channels-last input x
    (and the other tensors of the computation)."""
    return refusal("filter_input_grad", (x, *tensors)) is None
