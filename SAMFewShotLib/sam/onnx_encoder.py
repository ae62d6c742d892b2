"""Run SAM's image encoder with ONNX Runtime on the CPU (``--encoder-runtime onnx``, and the
CLI's default ``auto`` when the model runs on the CPU and onnxruntime is installed: see
:func:`resolve_runtime`).

The encoder of a checkpoint is exported to ONNX once (``torch.onnx.export``, TorchScript
exporter, opset 17, batch of one: TinyViT's reshapes trace the batch size as a constant, and
on a CPU a batch gains nothing over a loop) and cached in the weights store next to the weights,
under ``<weights dir>/onnx/<checkpoint sha256>/encoder-<variant>-v<GRAPH_VERSION>.onnx``; every
later run loads the cached file. A ViT encoder is exported with its global attention row-chunked
(:mod:`.vit_attention`: same numbers; ViT-B 7.9 -> 5.0-5.3 s per slice in ONNX Runtime); the graph
version in the name keeps files exported before that from being reused. Variants:

- ``fp32``: the exported graph as is; parity with the torch fp32 encoder is tested on tiny
  models (Testing/sam/test_onnx_encoder.py: embeddings and decoded logits within 1e-3,
  identical masks).
- ``int8``: ONNX Runtime's dynamic quantisation of the fp32 graph (weights int8, activations
  quantised per call; ``onnxruntime.quantization.quantize_dynamic``, MatMul/Gemm only). Opt-in
  (``--encoder-runtime onnx-int8``); its masks differ from fp32, see
  benchmarks/bench_encoder_runtimes.py for the measured mask agreement.

Files are written through :func:`SAMFewShotLib.files.write_atomic`: a crash mid-export leaves
no half file, and a cached file is only ever complete. The cache key is the checkpoint's
sha256, so a different file under the same name never reuses a stale graph. Embeddings from
each runtime are cached under their own precision tag (:attr:`OnnxImageEncoder.precision`),
never mixed with torch's.

Needs the ``onnx`` extra (``onnx``, ``onnxruntime`` from the package index).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import write_atomic
from .efficientvit import encoder_input_side
from .weights_store import weights_dir

#: Encoder runtimes a user can pick: auto (:func:`resolve_runtime`), torch, ONNX Runtime fp32,
#: ONNX Runtime dynamic int8.
ENCODER_RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
#: ONNX opset of the export.
OPSET = 17
#: Version of the exported graph, part of the cached file's name (2: ViT global attention
#: row-chunked, sam/vit_attention.py).
GRAPH_VERSION = 2
#: Side length of SAM's square encoder input, pixels.
INPUT_SIZE = 1024
_VARIANTS = {"onnx": "fp32", "onnx-int8": "int8"}
#: Encoders with fewer parameters run one slice per thread (:class:`OnnxImageEncoder`): TinyViT
#: (5.7 M) and EfficientViT-SAM L0 do, ViT-B (89 M) keeps all threads on one slice.
LIGHT_ENCODER_PARAMETERS = 20_000_000
# protobuf cannot hold a single ONNX file over 2 GiB (ViT-H's encoder is 2.5 GB in fp32)
_PROTOBUF_LIMIT = 2**31 - 1


def onnx_available() -> bool:
    """True when ``onnx`` and ``onnxruntime`` can be imported (the ``onnx`` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of :data:`ENCODER_RUNTIMES`, else ValueError naming it; also a
    ValueError when an ONNX runtime is asked for without the ``onnx`` extra installed."""
    if runtime not in ENCODER_RUNTIMES:
        raise ValueError(f"Encoder runtime must be one of {', '.join(ENCODER_RUNTIMES)}, not {runtime!r}")
    if runtime in _VARIANTS and not onnx_available():
        raise ValueError(
            f"Encoder runtime {runtime!r} needs onnx and onnxruntime "
            "(pip install 'samfewshot[onnx]'), or use --encoder-runtime torch"
        )
    return runtime


def resolve_runtime(runtime: str, device_type: str) -> str:
    """The runtime to use: ``runtime`` itself, or for "auto" "onnx" when the model runs on the
    CPU (``device_type`` "cpu") and onnxruntime is installed, else "torch". ONNX fp32 won on both
    architectures measured (benchmarks/bench_encoder_runtimes.py: 0.6x torch's CPU seconds per
    slice for ViT-B, 0.53x for TinyViT, logits within 1e-6) and gives the same masks."""
    check_runtime(runtime)
    if runtime != "auto":
        return runtime
    return "onnx" if device_type == "cpu" and onnx_available() else "torch"


def cached_encoder_path(sha256: str, runtime: str = "onnx", home: str | os.PathLike | None = None) -> Path:
    """Where the ONNX encoder of the checkpoint with digest ``sha256`` is cached for
    ``runtime`` ("onnx" or "onnx-int8"):
    ``<weights dir>/onnx/<sha256>/encoder-<fp32|int8>-v<GRAPH_VERSION>.onnx``."""
    if runtime not in _VARIANTS:
        raise ValueError(f"ONNX runtime must be one of {', '.join(_VARIANTS)}, not {runtime!r}")
    if len(sha256) < 16 or not all(c in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"Not a sha256 digest: {sha256!r}")
    return weights_dir(home) / "onnx" / sha256.lower() / f"encoder-{_VARIANTS[runtime]}-v{GRAPH_VERSION}.onnx"


def export_encoder(image_encoder: nn.Module, path: str | os.PathLike) -> Path:
    """Export ``image_encoder`` (input (1, 3, 1024, 1024) float32 normalised pixels, 512 for
    EfficientViT-SAM L (:func:`~.efficientvit.encoder_input_side`); output
    (1, C, 64, 64) embedding) to one ONNX file at ``path``, atomically; returns the path.

    Raises:
        ValueError: the encoder's weights exceed what one ONNX file can hold (2 GiB; ViT-H).
    """
    size = sum(p.numel() * p.element_size() for p in image_encoder.parameters())
    if size >= _PROTOBUF_LIMIT:
        raise ValueError(
            f"This encoder's weights ({size / 1e9:.1f} GB) exceed the 2 GiB one ONNX file can hold; "
            "use --encoder-runtime torch"
        )
    image_encoder = image_encoder.eval()
    device = next(image_encoder.parameters()).device
    side = encoder_input_side(image_encoder) if hasattr(image_encoder, "img_size") else INPUT_SIZE
    example = torch.zeros(1, 3, side, side, device=device)

    def write(temp: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings: SAM's shapes are fixed at 1024^2
            torch.onnx.export(
                image_encoder,
                (example,),
                str(temp),
                input_names=["image"],
                output_names=["embedding"],
                opset_version=OPSET,
                dynamo=False,
            )

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, write, suffix=".onnx")


def quantize_encoder(fp32_path: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation of the fp32 ONNX encoder at ``fp32_path`` (weights int8,
    activations quantised at run time, onnxruntime's ``quantize_dynamic``), written atomically to
    ``path``; returns the path. Only MatMul/Gemm are quantised (the transformer's weights, nearly
    all of the compute): TinyViT's convolutions carry folded batch-norm weights that are not
    graph constants, which the quantiser refuses, and convolutions stay fp32 in ViT too."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(temp: Path) -> None:
        quantize_dynamic(
            str(fp32_path), str(temp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, write, suffix=".onnx")


def ensure_onnx_encoder(
    image_encoder: nn.Module, sha256: str, runtime: str = "onnx", home: str | os.PathLike | None = None
) -> Path:
    """The cached ONNX encoder of the checkpoint ``sha256`` for ``runtime``, exporting (and for
    "onnx-int8" quantising) it first when it is not cached yet."""
    check_runtime(runtime)
    fp32 = cached_encoder_path(sha256, "onnx", home)
    if not fp32.is_file():
        export_encoder(image_encoder, fp32)
    if runtime == "onnx":
        return fp32
    int8 = cached_encoder_path(sha256, runtime, home)
    if not int8.is_file():
        quantize_encoder(fp32, int8)
    return int8


class OnnxImageEncoder:
    """SAM's image encoder as an ONNX Runtime CPU session, called like the torch module.

    Args:
        path: the ONNX file (from :func:`ensure_onnx_encoder`).
        runtime: "onnx" or "onnx-int8" (names the precision tag of the embeddings).
        num_threads: CPU threads to use (None: all cores, onnxruntime's default).
        concurrent_slices: slices encoded at once, each on ``num_threads // concurrent_slices``
            intra-op threads of the one session (ONNX Runtime's ``run`` is thread-safe and releases
            the GIL). A light encoder's layers are too small to keep two threads busy on one
            slice: TinyViT on 2 cores, 0.64 s per slice with 2 intra-op threads, 0.57 s with two
            1-thread runs at once (``LIGHT_ENCODER_PARAMETERS``; session 7, idle). Callers pass
            batches of ``slices_per_call`` slices to profit.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        runtime: str = "onnx",
        num_threads: int | None = None,
        concurrent_slices: int = 1,
    ) -> None:
        import onnxruntime

        if runtime not in _VARIANTS:
            raise ValueError(f"ONNX runtime must be one of {', '.join(_VARIANTS)}, not {runtime!r}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, not {num_threads}")
        if concurrent_slices < 1:
            raise ValueError(f"concurrent_slices must be >= 1, not {concurrent_slices}")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if concurrent_slices > 1:
            options.intra_op_num_threads = max(1, (num_threads or os.cpu_count() or 1) // concurrent_slices)
        elif num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.path = Path(path)
        self.runtime = runtime
        self.slices_per_call = concurrent_slices
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @property
    def precision(self) -> str:
        """Embedding-cache precision tag: "onnx-fp32" or "onnx-int8"."""
        return f"onnx-{_VARIANTS[self.runtime]}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1024, 1024) float32 normalised pixels (any device) -> (B, C, 64, 64) float32
        CPU embedding."""
        batch = images.detach().to("cpu", torch.float32).contiguous().numpy()

        def run(image: np.ndarray) -> np.ndarray:
            return self.session.run(["embedding"], {"image": image[None]})[0]

        if self.slices_per_call > 1 and len(batch) > 1:
            with ThreadPoolExecutor(min(self.slices_per_call, len(batch))) as pool:
                embeddings = list(pool.map(run, batch))
        else:
            embeddings = [run(image) for image in batch]
        return torch.from_numpy(np.concatenate(embeddings))


def onnx_image_encoder(
    sam: nn.Module,
    sha256: str,
    runtime: str = "onnx",
    *,
    num_threads: int | None = None,
    home: str | os.PathLike | None = None,
    concurrent_slices: int | None = None,
) -> OnnxImageEncoder:
    """The ONNX Runtime encoder of ``sam`` (checkpoint digest ``sha256``): exported and cached on
    first use, loaded from the cache afterwards. ``concurrent_slices`` None: one slice per thread
    for a light encoder (under ``LIGHT_ENCODER_PARAMETERS``), one slice on all threads otherwise."""
    image_encoder = sam.image_encoder
    assert isinstance(image_encoder, nn.Module), "sam.image_encoder is SAM's encoder module"
    path = ensure_onnx_encoder(image_encoder, sha256, runtime, home)
    if concurrent_slices is None:
        light = sum(p.numel() for p in image_encoder.parameters()) < LIGHT_ENCODER_PARAMETERS
        concurrent_slices = (num_threads or torch.get_num_threads()) if light else 1
    return OnnxImageEncoder(path, runtime, num_threads, concurrent_slices=max(1, concurrent_slices))
