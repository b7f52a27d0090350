"""The model policies' tables of the config file, [policy.llama_cpp] and [policy.onnx_trt]: the
configuration holds them whichever policy runs, so they live apart from the policies, whose
modules (prompt formats, sessions, decoders) only a model read imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.onnx_runtime import RuntimeSettings


@dataclass(frozen=True)
class LlamaCppSettings:
    model: str = ""  # GGUF text model
    mmproj: str = ""  # GGUF vision projector
    n_ctx: int = 8192
    n_threads: int = 0  # 0: llama.cpp's choice
    n_gpu_layers: int = 0  # -1 offloads every layer (GPU builds of llama-cpp-python)
    flash_attn: bool = False
    temperature: float = 0.0  # 0: greedy, deterministic
    top_p: float = 1.0
    seed: int = 0
    max_think_tokens: int = 0  # a reply's thought; 0: the prompt profile's default
    # prompt profile, by name or file; "": the model folder's, else the read's default
    profile: str = ""
    # shown images fit this long side; 0: at most the prompt profile's max_pixels (as trained)
    image_size: int = 0


@dataclass(frozen=True)
class OnnxTrtSettings:
    model_dir: str = ""  # folder written by `edge-agent export onnx-llm`
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    n_ctx: int = 8192  # capped at the checkpoint's context length
    prefill_chunk: int = 256  # prompt tokens per decoder call: bounds the logits' memory
    grammar: bool = True  # replies constrained to the format; false: free, mistakes end the read
    max_think_tokens: int = 0  # a reply's thought; 0: the prompt profile's default
    # prompt profile, by name or file; "": the model folder's, else the read's default
    profile: str = ""
    # shown images fit this long side; 0: at most the prompt profile's max_pixels (as trained)
    image_size: int = 0

    def __post_init__(self) -> None:
        if self.n_ctx < 1 or self.prefill_chunk < 1:
            raise ValueError("n_ctx and prefill_chunk must be >= 1")
