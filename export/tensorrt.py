"""ONNX -> TensorRT engine (a serialized plan) with the `tensorrt` Python API.

The configuration is derived by pure functions from the ONNX graph's inputs and the options
(`graph_inputs`, `profiles`, `builder_flags`, `calibration_batches`), tested without TensorRT;
only `build_engine` needs TensorRT and an NVIDIA GPU, both checked first with a clear message.

How this relates to ONNX Runtime's TensorRT provider (`tools.onnx_runtime`): the provider builds
its own engines, one per subgraph it takes, and caches them under names it chooses in
`[tools.runtime] trt_engine_cache` ("<model>.trt/" by default); only ONNX Runtime reads those.
The plan written here is separate: a whole-graph engine for TensorRT's own runtime (trtexec,
Triton, a native back end), with `<plan>.json` beside it naming the ONNX file's SHA-256, the
TensorRT version, the GPU's compute capability, the profiles and the precision flags. What the
two share is the *timing cache*, which is TensorRT's own format: by default this builder reads
and writes `<model>.trt/TensorrtExecutionProvider_cache_sm<major><minor>.timing`, the file the
provider uses with its timing cache enabled, so tactic timings measured by either are reused.
An engine runs only on the GPU model and TensorRT version that built it: build on the
workstation.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from export.gguf import ExportError
from imaging.checksum import sha256_file
from imaging.errors import ModelLoadError
from imaging.model_folder import ModelFolder
from tools.locate_model import read_manifest

log = logging.getLogger(__name__)

Dim = int | str  # a fixed size, or the name of a dynamic axis
Shape = tuple[int, ...]
PLAN_FORMAT = "edge-agent tensorrt plan 1"
ONNX_TYPES = {1: "float32", 10: "float16", 11: "float64", 6: "int32", 7: "int64", 9: "bool"}


@dataclass(frozen=True)
class GraphInput:
    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @property
    def dynamic(self) -> tuple[int, ...]:
        """Positions of the axes whose size is decided at run time."""
        return tuple(i for i, d in enumerate(self.shape) if not isinstance(d, int) or d < 1)


@dataclass(frozen=True)
class Profile:
    """One input's shape range: TensorRT tunes its kernels for `opt`, accepts min..max."""

    name: str
    min: Shape
    opt: Shape
    max: Shape


@dataclass(frozen=True)
class BuildOptions:
    fp16: bool = False
    int8_calib: Path | None = None  # folder of .npz files, one feed each (arrays by input name)
    workspace_mib: int = 4096  # TensorRT's scratch memory limit while building and running
    timing_cache: Path | None = None  # None: the file ONNX Runtime's provider uses
    max_batch: int = 1  # upper end of a dynamic first (batch) axis
    shapes: Mapping[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workspace_mib < 1 or self.max_batch < 1:
            raise ExportError("--workspace-mib and --max-batch must be at least 1")


def graph_inputs(model) -> tuple[GraphInput, ...]:
    """The inputs a caller feeds (an onnx.ModelProto's inputs that are not initializers)."""
    weights = {t.name for t in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        shape = tuple(d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim)
        found.append(GraphInput(value.name, shape, ONNX_TYPES.get(tensor.elem_type, "other")))
    return tuple(found)


def parse_shape(text: str) -> tuple[str, tuple[Shape, Shape, Shape]]:
    """`NAME=MIN:OPT:MAX` (each like 1x3x64x64), or `NAME=SHAPE` for one fixed shape."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not name or len(parts) not in (1, 3):
        raise ExportError(f"--shape {text!r}: expected NAME=MIN:OPT:MAX, e.g. image=1x3x64x64")
    try:
        shapes = [tuple(int(v) for v in part.lower().split("x")) for part in parts]
    except ValueError:
        raise ExportError(f"--shape {text!r}: sizes must be integers joined by 'x'") from None
    low, opt, high = shapes * 3 if len(shapes) == 1 else shapes
    return name, (low, opt, high)


def resolve_model(path: Path) -> tuple[Path, dict[str, tuple[Shape, Shape, Shape]]]:
    """An ONNX file as given, or a locate model folder: its graph, with the one shape the locate
    tool feeds it (batch 1, the manifest's image size) as the default profile."""
    if not Path(path).is_dir():
        return Path(path), {}
    try:
        _, manifest = read_manifest(Path(path))
    except ModelLoadError as exc:
        raise ExportError(
            f"{path} is not a locate model folder ({exc}); give the .onnx file to build"
        ) from None
    height, width = manifest.image.size
    fixed = {
        manifest.image.name: (1, 3, height, width),
        manifest.text.name: (1, manifest.text.tokens, manifest.text.dim),
    }
    return Path(path) / manifest.model, {name: (s, s, s) for name, s in fixed.items()}


def profiles(inputs: Sequence[GraphInput], options: BuildOptions) -> tuple[Profile, ...]:
    """A shape range for every input with a dynamic axis; a range we cannot derive is an error."""
    known = {i.name for i in inputs}
    unknown = sorted(set(options.shapes) - known)
    if unknown:
        raise ExportError(
            f"--shape names {', '.join(unknown)}, not an input; inputs: {', '.join(sorted(known))}"
        )
    return tuple(_profile(i, options) for i in inputs if i.dynamic or i.name in options.shapes)


def _profile(graph_input: GraphInput, options: BuildOptions) -> Profile:
    if graph_input.name in options.shapes:
        return _checked(graph_input, *options.shapes[graph_input.name])
    if graph_input.dynamic != (0,):
        axes = [graph_input.shape[i] for i in graph_input.dynamic]
        example = "x".join(
            "N" if i in graph_input.dynamic else str(d) for i, d in enumerate(graph_input.shape)
        )
        raise ExportError(
            f"input {graph_input.name!r} {list(graph_input.shape)} has dynamic axes {axes} "
            f"besides the batch: give --shape {graph_input.name}=MIN:OPT:MAX (each {example})"
        )
    rest = tuple(int(d) for d in graph_input.shape[1:])
    return Profile(graph_input.name, (1, *rest), (1, *rest), (options.max_batch, *rest))


def _checked(graph_input: GraphInput, low: Shape, opt: Shape, high: Shape) -> Profile:
    """The user's range fits the graph: same rank, fixed axes kept, min <= opt <= max."""
    where = f"--shape {graph_input.name}"
    if not len(low) == len(opt) == len(high) == len(graph_input.shape):
        raise ExportError(f"{where}: the input has {len(graph_input.shape)} axes")
    for axis, dim in enumerate(graph_input.shape):
        sizes = (low[axis], opt[axis], high[axis])
        if isinstance(dim, int) and dim > 0 and sizes != (dim, dim, dim):
            raise ExportError(f"{where}: axis {axis} is fixed at {dim} in the graph")
        if not 1 <= sizes[0] <= sizes[1] <= sizes[2]:
            raise ExportError(f"{where}: axis {axis} needs 1 <= min <= opt <= max, got {sizes}")
    return Profile(graph_input.name, low, opt, high)


def builder_flags(options: BuildOptions) -> tuple[str, ...]:
    """Names of tensorrt.BuilderFlag members to set. INT8 keeps FP16 as the fallback precision
    for layers without an INT8 kernel when --fp16 is given, else FP32."""
    flags = []
    if options.fp16:
        flags.append("FP16")
    if options.int8_calib is not None:
        flags.append("INT8")
    return tuple(flags)


def calibration_batches(folder: Path, inputs: Sequence[GraphInput], ranges: Sequence[Profile]):
    """Every .npz in `folder`, checked: an array per input, float32, within its profile."""
    files = sorted(Path(folder).glob("*.npz")) if Path(folder).is_dir() else []
    if not files:
        raise ExportError(f"--int8-calib {folder}: no .npz files (one feed each, by input name)")
    by_name = {p.name: p for p in ranges}
    batches = []
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            feed = {i.name: data[i.name] for i in inputs if i.name in data}
        missing = [i.name for i in inputs if i.name not in feed]
        if missing:
            raise ExportError(f"{path.name} lacks {', '.join(missing)}")
        for graph_input in inputs:
            _check_feed(path, graph_input, feed[graph_input.name], by_name.get(graph_input.name))
        batches.append(feed)
    return batches


def _check_feed(path: Path, graph_input: GraphInput, array: np.ndarray, limits) -> None:
    low, high = (limits.min, limits.max) if limits else (graph_input.shape, graph_input.shape)
    fits = len(array.shape) == len(low) and all(
        a <= s <= b for a, s, b in zip(low, array.shape, high, strict=True)
    )
    if array.dtype != np.dtype(graph_input.dtype) or not fits:
        raise ExportError(
            f"{path.name}: {graph_input.name} is {array.dtype} {list(array.shape)}; the engine "
            f"takes {graph_input.dtype} from {list(low)} to {list(high)}"
        )


def default_timing_cache(onnx_path: Path, capability: tuple[int, int]) -> Path:
    """The timing cache ONNX Runtime's TensorRT provider keeps for this model by default."""
    major, minor = capability
    return Path(f"{onnx_path}.trt") / f"TensorrtExecutionProvider_cache_sm{major}{minor}.timing"


def write_plan_record(
    onnx_path: Path, plan: Path, options: BuildOptions, ranges, capability, cache: Path
) -> dict:
    """`<plan>.json`: the plan's hash and what it was built from and for (TensorRT version, GPU
    compute capability, profiles), enough to tell whether it matches a machine. Written and read
    as a model folder manifest, so a changed plan fails its hash like any model file."""
    record = ModelFolder.write(
        plan.parent,
        format=PLAN_FORMAT,
        roles={plan.name: "plan"},
        source={"onnx": {"file": str(onnx_path), "sha256": sha256_file(onnx_path)}},
        versions={"tensorrt": _version("tensorrt")},
        fields={
            # the plan's entry as earlier records had it (the CLI prints its size from it)
            "plan": {"file": plan.name, "sha256": sha256_file(plan), "bytes": plan.stat().st_size},
            "compute_capability": f"{capability[0]}.{capability[1]}",
            "flags": list(builder_flags(options)),
            "workspace_mib": options.workspace_mib,
            "profiles": [asdict(p) for p in ranges],
            "timing_cache": str(cache),
        },
        manifest_name=plan.name + ".json",
    )
    return record.manifest.to_plain()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --- what needs a GPU ------------------------------------------------------------------------


class _Cuda:
    """The CUDA driver API through ctypes: device count, compute capability, device buffers
    for INT8 calibration. No CUDA Python package needed; absent driver -> `available` False."""

    def __init__(self) -> None:
        self.lib = None
        for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        self.available = self.lib is not None and self.lib.cuInit(0) == 0 and self.devices() > 0

    def devices(self) -> int:
        count = ctypes.c_int(0)
        return count.value if self.lib.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0

    def capability(self, device: int = 0) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._ok(self.lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device), "capability")
        self._ok(self.lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device), "capability")
        return major.value, minor.value

    def use_primary_context(self, device: int = 0) -> None:
        """Share the context TensorRT's runtime API uses, so buffers are valid for it."""
        context = ctypes.c_void_p()
        self._ok(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "context")
        self._ok(self.lib.cuCtxSetCurrent(context), "context")

    def upload(self, array: np.ndarray) -> int:
        pointer = ctypes.c_uint64()
        data = np.ascontiguousarray(array)
        size = ctypes.c_size_t(data.nbytes)
        self._ok(self.lib.cuMemAlloc_v2(ctypes.byref(pointer), size), "alloc")
        self._ok(
            self.lib.cuMemcpyHtoD_v2(pointer, data.ctypes.data_as(ctypes.c_void_p), data.nbytes),
            "copy",
        )
        return pointer.value

    def free(self, pointer: int) -> None:
        self.lib.cuMemFree_v2(ctypes.c_uint64(pointer))

    @staticmethod
    def _ok(code: int, what: str) -> None:
        if code != 0:
            raise ExportError(f"CUDA driver error {code} ({what})")


def require_gpu() -> _Cuda:
    """The CUDA driver with at least one GPU, or a clear ExportError."""
    cuda = _Cuda()
    if not cuda.available:
        raise ExportError(
            "export tensorrt needs an NVIDIA GPU and its driver (libcuda), and none was found "
            "on this machine. A TensorRT engine is built on the GPU model that will run it: run "
            "this command on the workstation. Without a GPU, ONNX Runtime runs the .onnx on CPU."
        )
    return cuda


def require_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise ExportError(
            "the tensorrt Python package is not installed: pip install 'edge-agent[gpu]' "
            "(TensorRT 10 for this machine's CUDA)"
        ) from None
    return tensorrt


def build_engine(source: Path, plan: Path, options: BuildOptions) -> dict:
    """Build and write the plan (+ `<plan>.json`, timing cache); returns the record. `source` is an
    ONNX file or a locate model folder; --shape options override the folder's default shapes."""
    onnx_path, defaults = resolve_model(source)
    options = replace(options, shapes={**defaults, **options.shapes})
    model = _load_onnx(onnx_path)
    inputs = graph_inputs(model)
    ranges = profiles(inputs, options)
    batches = (
        calibration_batches(options.int8_calib, inputs, ranges) if options.int8_calib else None
    )
    cuda = require_gpu()
    trt = require_tensorrt()
    capability = cuda.capability()
    cache = options.timing_cache or default_timing_cache(onnx_path, capability)
    data = _build(trt, cuda, onnx_path, options, ranges, batches, cache)
    plan.parent.mkdir(parents=True, exist_ok=True)
    partial = plan.with_name(plan.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, plan)
    return write_plan_record(onnx_path, plan, options, ranges, capability, cache)


def _load_onnx(path: Path):
    import onnx

    if not Path(path).is_file():
        raise ExportError(f"{path} does not exist")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise ExportError(f"{path} is not an ONNX model: {exc}") from None


def _build(trt, cuda, onnx_path, options, ranges, batches, cache: Path) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        problems = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {problems}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    for flag in builder_flags(options):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    for item in ranges:
        profile.set_shape(item.name, item.min, item.opt, item.max)
    config.add_optimization_profile(profile)
    timing = config.create_timing_cache(cache.read_bytes() if cache.is_file() else b"")
    if not config.set_timing_cache(timing, ignore_mismatch=False):
        log.warning("timing cache %s is from another GPU or TensorRT: starting afresh", cache)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    if batches is not None:
        cuda.use_primary_context()
        config.set_calibration_profile(profile)
        config.int8_calibrator = _calibrator(trt, cuda, batches, options.int8_calib)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise ExportError(f"TensorRT could not build an engine for {onnx_path.name} (see above)")
    _save_timing_cache(cache, bytes(config.get_timing_cache().serialize()))
    return bytes(data)


def _save_timing_cache(cache: Path, data: bytes) -> None:
    """Keep the timings for the next build; a read-only model folder only costs that."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(data)
    except OSError as exc:
        log.warning("timing cache not saved to %s: %s (use --timing-cache)", cache, exc.strerror)


def _calibrator(trt, cuda: _Cuda, batches: list[dict], folder: Path):
    """Entropy calibration over the feeds; the table is cached beside them for rebuilds."""
    table = Path(folder) / "calibration.cache"

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._feeds: Iterator[dict] = iter(batches)
            self._held: list[int] = []

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            for pointer in self._held:
                cuda.free(pointer)
            self._held = []  # freed: a later call must not free them again
            feed = next(self._feeds, None)
            if feed is None:
                return None
            self._held = [cuda.upload(feed[name]) for name in names]
            return list(self._held)

        def read_calibration_cache(self):
            return table.read_bytes() if table.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            table.write_bytes(bytes(cache))

    return Calibrator()
