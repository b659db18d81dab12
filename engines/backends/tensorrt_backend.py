"""TensorRT on a CUDA GPU: an engine built from the shipped ONNX file, cached on disk.

Building is a separate, logged step (every ONNX parser error is reported), done once per key
(ONNX hash, TensorRT version, GPU, compute capability, precision, batch profile: see
trt_cache.py) and reused after. Inference runs on device buffers owned by PyTorch tensors, so no
extra CUDA binding is needed; batches larger than the profile's maximum are split.

TensorRT 10 takes FP16 as a builder flag. TensorRT 11 removed the flag (networks are strongly
typed, precision comes from the ONNX types): there, an fp16 request uses `<model>.fp16.onnx`
beside the model when one exists and otherwise builds fp32, and says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engines.backends import (
    MAX_BATCH,
    BackendOptions,
    BackendUnavailable,
    ModelSpec,
    TensorSpec,
    cuda_unavailable_reason,
    refuse_int8,
    run_chunked,
    single_input,
)
from engines.backends.trt_cache import EngineCache, EngineKey, Profile, file_sha256, load_or_build

try:
    import tensorrt as trt
except ImportError as exc:
    raise BackendUnavailable(
        "backend tensorrt needs the TensorRT Python package (tensorrt-cu12/-cu13 from NVIDIA's index) "
        "and a CUDA GPU; use --backend torch or onnxruntime"
    ) from exc
try:
    import torch
except ImportError as exc:
    raise BackendUnavailable("backend tensorrt uses CUDA PyTorch for device buffers; install torch") from exc

log = logging.getLogger(__name__)

PROFILE = Profile(min_batch=1, opt_batch=8, max_batch=MAX_BATCH)


class _Logger(trt.ILogger):
    """Routes TensorRT's messages into Python logging."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        level = {
            trt.ILogger.INTERNAL_ERROR: logging.ERROR,
            trt.ILogger.ERROR: logging.ERROR,
            trt.ILogger.WARNING: logging.WARNING,
            trt.ILogger.INFO: logging.DEBUG,
        }.get(severity, logging.DEBUG)
        log.log(level, "TensorRT: %s", msg)


_LOGGER = _Logger()


def _fp16_flag_supported() -> bool:
    return hasattr(trt.BuilderFlag, "FP16")


def build_engine(
    onnx_path: Path, precision: str, profile: Profile, timing_cache: bytes
) -> tuple[bytes, bytes]:
    """(serialized engine, updated timing cache) for one ONNX model."""
    builder = trt.Builder(_LOGGER)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, _LOGGER)
    if not parser.parse_from_file(str(onnx_path)):
        for i in range(parser.num_errors):
            log.error("TensorRT ONNX parser: %s", parser.get_error(i))
        raise RuntimeError(f"TensorRT could not parse {onnx_path} ({parser.num_errors} error(s) logged)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if precision == "fp16" and _fp16_flag_supported():
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        sample = tuple(tensor.shape)[1:]
        if any(d < 0 for d in sample):
            raise ValueError(
                f"{onnx_path}: only the batch axis may be dynamic; input {tensor.name} is "
                f"{tuple(tensor.shape)}"
            )
        opt_profile.set_shape(
            tensor.name,
            (profile.min_batch, *sample),
            (profile.opt_batch, *sample),
            (profile.max_batch, *sample),
        )
    config.add_optimization_profile(opt_profile)
    cache = None
    if timing_cache:
        try:
            cache = config.create_timing_cache(timing_cache)
        except Exception as exc:  # noqa: BLE001 - a corrupt timing cache only costs build time
            log.warning("TensorRT: ignoring an unreadable timing cache (%s)", exc)
    if cache is None:
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(
            f"TensorRT failed to build an engine from {onnx_path}; see the errors logged above"
        )
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


_TORCH_DTYPES = {trt.float32: torch.float32, trt.float16: torch.float16}


class TensorRTBackend:
    """One deserialized engine and its execution context."""

    def __init__(self, model: ModelSpec, options: BackendOptions | None = None) -> None:
        options = options or BackendOptions()
        # TensorRT can build QDQ graphs, but no int8 engine was built or checked against fp32 here.
        refuse_int8("tensorrt", model)
        if (reason := cuda_unavailable_reason()) is not None:
            raise BackendUnavailable(f"backend tensorrt: {reason}")
        onnx_path, precision = model.onnx, options.precision
        if precision == "fp16" and not _fp16_flag_supported():
            fp16_onnx = model.onnx.with_suffix(".fp16.onnx")
            if fp16_onnx.is_file():
                onnx_path = fp16_onnx
            else:
                log.warning(
                    "TensorRT %s has no FP16 flag and %s is absent: building fp32",
                    trt.__version__,
                    fp16_onnx.name,
                )
                precision = "fp32"
        if not onnx_path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
        major, minor = torch.cuda.get_device_capability()
        key = EngineKey(
            model=model.name,
            onnx_sha256=file_sha256(onnx_path),
            trt_version=trt.__version__,
            gpu_name=torch.cuda.get_device_name(),
            compute_capability=f"{major}.{minor}",
            precision=precision,
            profile=PROFILE,
        )
        cache = EngineCache(options.trt_cache_dir)
        runtime = trt.Runtime(_LOGGER)
        self._runtime = runtime

        def build() -> bytes:
            blob, timing = build_engine(onnx_path, precision, PROFILE, cache.read_timing_cache(key))
            cache.write_timing_cache(key, timing)
            return blob

        self.engine, self.rebuilt = load_or_build(cache, key, build, runtime.deserialize_cuda_engine)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{model.name}: engine must have one input and one output, has {inputs} and {outputs}"
            )
        self._in, self._out = inputs[0], outputs[0]
        self.input_spec = self._spec(self._in)
        self.output_spec = self._spec(self._out)
        self.precision = precision
        self.name = f"tensorrt-{precision}"

    def _spec(self, name: str) -> TensorSpec:
        shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(name))
        return TensorSpec(name, shape, "float32")

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        in_dtype = _TORCH_DTYPES[self.engine.get_tensor_dtype(self._in)]
        out_dtype = _TORCH_DTYPES[self.engine.get_tensor_dtype(self._out)]
        x_dev = torch.from_numpy(x).to("cuda").to(in_dtype).contiguous()
        self.context.set_input_shape(self._in, tuple(x_dev.shape))
        y_dev = torch.empty(tuple(self.context.get_tensor_shape(self._out)), dtype=out_dtype, device="cuda")
        self.context.set_tensor_address(self._in, x_dev.data_ptr())
        self.context.set_tensor_address(self._out, y_dev.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {self.name} on a batch of {len(x)}")
        return y_dev.float().cpu().numpy()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = single_input(inputs, self.input_spec)
        if len(x) == 0:  # the profile starts at batch 1: run one dummy row for the output's shape
            return {self.output_spec.name: self._run_one(np.zeros((1, *x.shape[1:]), np.float32))[:0]}
        return {self.output_spec.name: run_chunked(self._run_one, x, PROFILE.max_batch)}

    def close(self) -> None:
        self.context = None
        self.engine = None
