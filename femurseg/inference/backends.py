"""Inference backends: who runs the network inside the sliding window.

The sliding window (:mod:`femurseg.sliding`), the coarse-to-fine windows and the
test-time flips (:class:`~femurseg.inference.ensemble.EnsembleNetwork`) stay in
PyTorch whatever the backend; a backend only replaces each member network, the call
``(N, 1, D, H, W) windows → (N, C, D, H, W) logits``:

- ``torch``: the checkpoint's network in PyTorch eager mode (channels-last weights);
- ``onnxruntime``: the network exported once to ONNX and run by ONNX Runtime
  (extra ``femurseg[onnx]``);
- ``openvino``: the same ONNX file run by OpenVINO (extra ``femurseg[openvino]``);
- ``auto``: the first installed of :data:`AUTO_ORDER`, the order measured fastest on
  the CPUs of ``docs/benchmarks.md`` with results identical within the agreement bound.

Export and cache: each checkpoint is exported with ``torch.onnx.export`` (the
``torch.export``-based exporter, opset :data:`OPSET`) with a dynamic batch and the
window's fixed spatial size, to ``<export_dir>/<sha256>-<D>x<H>x<W>-v<EXPORT_VERSION>.onnx``,
``export_dir`` defaulting to ``~/.cache/femurseg/onnx`` (the bundled weights live in
the package, which may not be writable). The SHA-256 is the checkpoint file's (the
one ``report.json`` names); for in-memory weights (averaged folds) it is the digest
of the weights themselves. A changed checkpoint therefore gets a new file, and an
existing file is reused without exporting again. Files are written atomically, so
two processes exporting the same checkpoint at once both end with a complete file.

Examples
--------
>>> from femurseg.models.zoo import model_path                       # doctest: +SKIP
>>> from femurseg.models.checkpoints import load_checkpoints          # doctest: +SKIP
>>> info = load_checkpoints([model_path()]).compartments[0]            # doctest: +SKIP
>>> net = backend_network(info, "openvino", window=(48, 48, 48))       # doctest: +SKIP
>>> net(torch.zeros(4, 1, 48, 48, 48)).shape                           # doctest: +SKIP
torch.Size([4, 3, 48, 48, 48])
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from femurseg.atomic import atomic_path
from femurseg.errors import BackendError
from femurseg.models.checkpoints import CheckpointInfo, build_net

__all__ = [
    "Backend", "BACKENDS", "AUTO_ORDER", "OPSET", "EXPORT_VERSION", "available_backends", "resolve_backend",
    "default_export_dir", "export_key", "export_onnx", "exported_model", "OnnxRuntimeNetwork", "OpenVinoNetwork",
    "backend_network",
]

Backend = Literal["auto", "torch", "onnxruntime", "openvino"]

#: every backend name ``auto`` can resolve to
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
#: what ``auto`` picks, the first installed (fastest first, as measured in docs/benchmarks.md)
AUTO_ORDER: tuple[str, ...] = ("openvino", "torch")
#: ONNX opset of the exported graphs
OPSET = 18
#: bumped whenever the exported graph changes (opset, dynamic axes), so old cache files are not reused
EXPORT_VERSION = 1

#: import name of each runtime and the extra that installs it
_RUNTIMES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}
#: what exporting needs besides torch (the torch.export-based exporter writes through onnxscript)
_EXPORTER = ("onnxscript", "onnx")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backends() -> list[str]:
    """The backends that can run here: ``torch`` and each runtime whose package (and the exporter) is installed."""
    exporter = all(_installed(m) for m in _EXPORTER)
    return ["torch"] + [name for name, (module, _) in _RUNTIMES.items() if exporter and _installed(module)]


def resolve_backend(backend: str) -> str:
    """``auto`` → the first installed of :data:`AUTO_ORDER`; a named backend is checked and returned.

    Raises
    ------
    ValueError
        If ``backend`` is not a known name.
    BackendError
        If a named runtime (or the ONNX exporter it needs) is not installed; the
        message names the extra that installs it.
    """
    if backend == "auto":
        installed = available_backends()
        return next(name for name in AUTO_ORDER if name in installed)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if backend != "torch":
        module, extra = _RUNTIMES[backend]
        missing = [m for m in (module, *_EXPORTER) if not _installed(m)]
        if missing:
            raise BackendError(f"backend {backend!r} needs {', '.join(missing)}: "
                               f"pip install 'femurseg[{extra}]' (or use --backend torch)")
    return backend


def _import(module: str, backend: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = _RUNTIMES.get(backend, (module, "onnx"))[1]
        raise BackendError(f"backend {backend!r} needs {module}: pip install 'femurseg[{extra}]' ({error})") from error


def default_export_dir() -> Path:
    """``~/.cache/femurseg/onnx``: where exported networks are kept."""
    return Path.home() / ".cache" / "femurseg" / "onnx"


def _weights_digest(info: CheckpointInfo) -> str:
    """SHA-256 of a network's identity when it has no file: net, arguments and every weight's bytes."""
    digest = hashlib.sha256(repr((info.net, sorted(info.net_kwargs.items()))).encode())
    for name in sorted(info.state_dict):
        tensor = info.state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def export_key(info: CheckpointInfo, window: Sequence[int]) -> str:
    """File name of a checkpoint's exported network: ``<sha256>-<D>x<H>x<W>-v<EXPORT_VERSION>.onnx``."""
    sha = info.sha256 or _weights_digest(info)
    return f"{sha}-{'x'.join(str(int(w)) for w in window)}-v{EXPORT_VERSION}.onnx"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines and warnings about optional packages (torchvision)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(net: nn.Module, path: str | os.PathLike[str], window: Sequence[int], in_channels: int = 1) -> Path:
    """Export ``net`` to one self-contained ONNX file (dynamic batch, fixed window), atomically.

    Parameters
    ----------
    net
        The network, in eval mode; called with ``(N, in_channels, *window)``.
    path
        Destination ``.onnx`` file.
    window
        Spatial size ``(D, H, W)`` of the windows it will see.
    in_channels
        Input channels.

    Raises
    ------
    BackendError
        If the exporter is not installed or cannot export the network.
    """
    for module in _EXPORTER:
        _import(module, "onnxruntime")
    net = net.eval().to(memory_format=torch.contiguous_format)
    example = torch.zeros((2, in_channels, *[int(w) for w in window]))  # batch 2: a batch of 1 would be specialised
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(net, (example,), input_names=["windows"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                                        opset_version=OPSET, dynamo=True, verbose=False)
    except Exception as error:  # the exporter raises many types; the cause is kept
        raise BackendError(f"cannot export {type(net).__name__} to ONNX ({type(error).__name__}: "
                           f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}); "
                           "use backend 'torch'") from error
    with atomic_path(path, suffix=".tmp.onnx") as tmp:
        program.save(str(tmp), external_data=False)
    return Path(path)


def exported_model(info: CheckpointInfo, window: Sequence[int], export_dir: str | os.PathLike[str] | None = None
                   ) -> Path:
    """The checkpoint's network as ONNX: the cached file, exported first if it is not there.

    Parameters
    ----------
    info
        The checkpoint.
    window
        Sliding-window size ``(D, H, W)``.
    export_dir
        Cache folder; default :func:`default_export_dir`.
    """
    path = Path(export_dir or default_export_dir()) / export_key(info, window)
    if not path.is_file():
        export_onnx(build_net(info), path, window, int(info.net_kwargs.get("in_channels", 1)))
    return path


def _threads(threads: int | None) -> int:
    return int(threads or torch.get_num_threads())


class OnnxRuntimeNetwork(nn.Module):
    """An exported network run by ONNX Runtime, called like the PyTorch network it replaces.

    Parameters
    ----------
    path
        ONNX file (see :func:`exported_model`).
    threads
        Intra-op threads; default ``torch.get_num_threads()``.
    providers
        Execution providers, best first; default the CPU. On a GPU build
        ``["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]``.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        super().__init__()
        ort = _import("onnxruntime", "onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads(threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        self._input = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, D, H, W)`` float32 → logits ``(N, C_out, D, H, W)`` on the CPU."""
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self._input: array})[0])


class OpenVinoNetwork(nn.Module):
    """An exported network compiled by OpenVINO for the CPU, called like the PyTorch network it replaces.

    The model is compiled once per batch size it meets (static shapes run faster
    than a dynamic batch; the sliding window uses at most ``batch_size`` sizes).

    Parameters
    ----------
    path
        ONNX file (see :func:`exported_model`).
    threads
        Inference threads; default ``torch.get_num_threads()``.
    precision
        ``"fp32"`` (default) or ``"bf16"`` (only where the CPU has native bf16;
        OpenVINO otherwise runs fp32).
    device
        OpenVINO device name (``"CPU"``, ``"GPU"``).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 precision: Literal["fp32", "bf16"] = "fp32", device: str = "CPU") -> None:
        super().__init__()
        ov = _import("openvino", "openvino")
        self.path = Path(path)
        self.device_name = device
        self._core = ov.Core()
        self._model = self._core.read_model(str(path))
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if device == "CPU":
            self._config["INFERENCE_NUM_THREADS"] = _threads(threads)
        self._requests: dict[int, Any] = {}

    def _request(self, batch: int) -> Any:
        if batch not in self._requests:
            model = self._model.clone()
            spatial = [d.get_length() for d in list(model.inputs[0].get_partial_shape())[1:]]  # fixed at export
            model.reshape([batch, *spatial])
            self._requests[batch] = self._core.compile_model(model, self.device_name, self._config).create_infer_request()
        return self._requests[batch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, D, H, W)`` float32 → logits ``(N, C_out, D, H, W)`` on the CPU."""
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        result = self._request(array.shape[0]).infer({0: array})[0]
        return torch.from_numpy(result.copy())  # the request reuses its output buffer


def backend_network(info: CheckpointInfo, backend: str, window: Sequence[int],
                    export_dir: str | os.PathLike[str] | None = None, precision: Literal["fp32", "bf16"] = "fp32",
                    threads: int | None = None) -> nn.Module:
    """A checkpoint's network on ``backend``, a module mapping windows to logits.

    Parameters
    ----------
    info
        The checkpoint.
    backend
        ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (:func:`resolve_backend`).
    window
        Sliding-window size ``(D, H, W)`` (the exported graph's fixed spatial size).
    export_dir
        Cache of exported networks (default :func:`default_export_dir`).
    precision
        For OpenVINO: ``"bf16"`` or ``"fp32"``; ONNX Runtime always runs fp32 and
        PyTorch's precision is set by the sliding window's autocast.
    threads
        Runtime threads (default ``torch.get_num_threads()``).

    Raises
    ------
    BackendError
        If the runtime is not installed or the network cannot be exported.
    """
    backend = resolve_backend(backend)
    if backend == "torch":
        return build_net(info)
    path = exported_model(info, window, export_dir)
    if backend == "onnxruntime":
        return OnnxRuntimeNetwork(path, threads)
    return OpenVinoNetwork(path, threads, precision)
