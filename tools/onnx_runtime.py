"""ONNX Runtime sessions for the tools' models: one provider chain from config, one owner each.

A model is opened when the toolbox is built (start-up), so a missing or corrupt file is a clear
error before any read starts, never in the middle of one."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imaging.errors import ModelLoadError

log = logging.getLogger(__name__)

# Config names → ONNX Runtime's execution provider names, in the order a workstation prefers them.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


@dataclass(frozen=True)
class RuntimeSettings:
    providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")  # tried in this order
    trt_engine_cache: str = ""  # TensorRT engine cache folder; "" = "<model>.trt/" beside it
    trt_fp16: bool = True
    threads: int = 0  # intra-op threads; 0 lets ONNX Runtime choose

    def __post_init__(self) -> None:
        unknown = [name for name in self.providers if name not in PROVIDERS]
        if unknown or not self.providers:
            raise ValueError(f"providers must be a non-empty list of {', '.join(PROVIDERS)}")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")


def provider_chain(
    settings: RuntimeSettings, available: Sequence[str], model: Path
) -> list[tuple[str, dict]]:
    """The configured providers this ONNX Runtime build has, with their options, in order."""
    chain = []
    for name in settings.providers:
        provider = PROVIDERS[name]
        if provider not in available:
            log.info("%s: provider %s is not in this onnxruntime build; skipped", model.name, name)
            continue
        options: dict = {}
        if name == "tensorrt":
            cache = Path(settings.trt_engine_cache or f"{model}.trt")
            options = {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache),
                "trt_fp16_enable": settings.trt_fp16,
            }
        chain.append((provider, options))
    if not chain:
        raise ModelLoadError(
            f"{model}: none of the configured providers ({', '.join(settings.providers)}) is "
            f"available; this onnxruntime has {', '.join(available)}"
        )
    return chain


class OnnxModel:
    """One InferenceSession: opened and checked once, `close()` releases it."""

    def __init__(self, path: Path, settings: RuntimeSettings | None = None) -> None:
        settings = settings or RuntimeSettings()
        self.path = Path(path)
        try:
            import onnxruntime
        except ImportError:
            raise ModelLoadError(
                f"{self.path}: onnxruntime is not installed (pip install 'edge-agent[onnx]')"
            ) from None
        if not self.path.is_file():
            raise ModelLoadError(f"model file {self.path} does not exist")
        chain = provider_chain(settings, onnxruntime.get_available_providers(), self.path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.log_severity_level = 3  # errors only; the provider that ran is logged below
        try:
            self._session = onnxruntime.InferenceSession(
                str(self.path),
                options,
                providers=[p for p, _ in chain],
                provider_options=[o for _, o in chain],
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ModelLoadError(f"{self.path} is not a loadable ONNX model: {exc}") from None
        self.provider = _config_name(self._session.get_providers()[0])
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())
        log.info("%s: running on %s", self.path.name, self.provider)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name; feeds not among the model's inputs are ignored."""
        if self._session is None:
            raise RuntimeError(f"{self.path.name}: session used after close()")
        used = {name: feeds[name] for name in self.input_names}
        return dict(zip(self.output_names, self._session.run(None, used), strict=True))

    def close(self) -> None:
        self._session = None


def _config_name(provider: str) -> str:
    return next((name for name, full in PROVIDERS.items() if full == provider), provider)
