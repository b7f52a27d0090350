"""The text decoder exported to ONNX (`edge-agent export onnx-llm`) drives the tools on ONNX
Runtime, providers TensorRT -> CUDA -> CPU, one KV cache per read.

Text only: the export has no vision tower yet, so the model reads the question, each image's
index and size, and the tools' text observations, never the pixels. The trajectory and the
report say so. Decoding is greedy and not grammar-constrained (llama_cpp's GBNF has no ONNX
counterpart here): a reply that does not follow the Ophiuchus format ends the read with a
recorded policy error."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.agent import Answer, Claim, Decision, PolicyError, ReadContext, ToolCall
from edge_agent.errors import ConfigError
from edge_agent.formats.ophiuchus import FormatError, OphiuchusFormat
from edge_agent.policies.llama_cpp import DISCLAIMER
from edge_agent.trajectory import PolicyRecord
from tools.onnx_runtime import RuntimeSettings

log = logging.getLogger(__name__)

Stream = Callable[[str], None]

NO_PIXELS = "[pixels not shown: this model reads text only]"
TEXT_ONLY = (
    "This model read only text (the question, image sizes and tool results); it did not see the "
    "images: the ONNX export has no vision tower."
)


@dataclass(frozen=True)
class OnnxTrtSettings:
    model_dir: str = ""  # folder written by `edge-agent export onnx-llm`
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    n_ctx: int = 8192  # capped at the checkpoint's context length
    prefill_chunk: int = 256  # prompt tokens per decoder call: bounds the logits' memory
    max_think_chars: int = 400
    image_size: int = 512  # shown images fit this long side, as the model was trained

    def __post_init__(self) -> None:
        if self.n_ctx < 1 or self.prefill_chunk < 1:
            raise ValueError("n_ctx and prefill_chunk must be >= 1")


class OnnxTrtPolicy:
    def __init__(self, settings: OnnxTrtSettings, stream: Stream | None = None) -> None:
        """The decoder is loaded here (a bad folder is a ConfigError before any read)."""
        from edge_agent.onnx_decoder import OnnxDecoder

        if not settings.model_dir or not Path(settings.model_dir).is_dir():
            raise ConfigError(
                f"[policy.onnx_trt] model_dir = {settings.model_dir!r}: no such folder "
                "(write one with `edge-agent export onnx-llm`)"
            )
        self.settings = settings
        self._stream = stream
        self._decoder = OnnxDecoder(Path(settings.model_dir), settings.runtime)
        self._record = PolicyRecord(
            name="onnx_trt",
            label=(
                f"AI model {self._decoder.file} (ONNX Runtime, {self._decoder.provider}), "
                "text only: images not shown to the model"
            ),
            disclaimer=f"{DISCLAIMER} {TEXT_ONLY}",
            model={
                "file": self._decoder.file,
                "sha256": self._decoder.sha256,
                "provider": self._decoder.provider,
                "vision": "none: image pixels are not given to the model",
            },
        )

    @property
    def record(self) -> PolicyRecord:
        return self._record

    @property
    def shown_size(self) -> int:
        return self.settings.image_size

    def open(self, context: ReadContext) -> OnnxSession:
        n_ctx = min(self.settings.n_ctx, self._decoder.context_length or self.settings.n_ctx)
        return OnnxSession(
            self._decoder,
            OphiuchusFormat(context.toolbox, self.settings.max_think_chars),
            n_ctx=n_ctx,
            prefill_chunk=self.settings.prefill_chunk,
            stream=self._stream,
        )

    def close(self) -> None:
        self._decoder.close()


class OnnxSession:
    """One read: its KV cache and how much of the read the model has already seen."""

    def __init__(
        self,
        decoder,
        form: OphiuchusFormat,
        *,
        n_ctx: int,
        prefill_chunk: int,
        stream: Stream | None = None,
    ) -> None:
        from edge_agent.onnx_decoder import KvCache

        self.decoder = decoder
        self.format = form
        self.n_ctx = n_ctx
        self.prefill_chunk = prefill_chunk
        self.stream = stream
        self.cache = KvCache(decoder.shape)
        self.seen = 0  # workspace images already described in the context
        self.pending = ""  # text the next turn must start with (the end of the last reply)

    def step(self, context: ReadContext) -> Decision:
        started = time.perf_counter()
        withheld = len(context.workspace) - self.seen
        text = self.format.turn_text(context, self.seen, NO_PIXELS, self.pending)
        self.seen = len(context.workspace)
        ids = self.decoder.tokenize(text)
        budget = context.budget.max_new_tokens
        if self.cache.length + len(ids) + budget > self.n_ctx:
            raise PolicyError(
                f"context full: {self.cache.length} positions used, this turn needs {len(ids)} "
                f"more plus up to {budget} for the reply, n_ctx is {self.n_ctx}"
            )
        logits = self._prefill(ids)
        usage = {
            "prompt_tokens": len(ids),
            "prompt_evaluated": len(ids),
            "images": 0,
            "images_withheld": withheld,  # shown to the read, not to this text-only model
            "prefill_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        decode_start = time.perf_counter()
        reply, generated = self._generate(logits, budget)
        usage.update(
            generated=generated, decode_ms=round((time.perf_counter() - decode_start) * 1000, 1)
        )
        return self._decision(reply, context, usage)

    def _prefill(self, ids: list[int]) -> np.ndarray:
        """The prompt in chunks after the cache; the logits of its last position."""
        logits = None
        for start in range(0, len(ids), self.prefill_chunk):
            logits = self.decoder.forward(ids[start : start + self.prefill_chunk], self.cache)[-1]
        return logits

    def _generate(self, logits: np.ndarray, budget: int) -> tuple[str, int]:
        """Greedy: the same context gives the same reply."""
        tokens: list[int] = []
        for _ in range(budget):
            token = int(np.argmax(logits))
            if token in self.decoder.end_ids:
                self.pending = "<|im_end|>\n"
                if self.stream:
                    self.stream("\n")
                return self.decoder.detokenize(tokens), len(tokens)
            tokens.append(token)
            if self.stream:
                self.stream(self.decoder.detokenize([token]))
            logits = self.decoder.forward([token], self.cache)[-1]
        if self.stream:
            self.stream("\n")
        raise PolicyError(  # !a: ASCII, the report's DICOM objects carry this text
            f"reply not finished within {budget} tokens (decoding is not grammar-constrained "
            f"on onnx_trt); it began {self.decoder.detokenize(tokens)[:120]!a}"
        )

    def _decision(self, reply: str, context: ReadContext, usage: dict) -> Decision:
        try:
            parsed = self.format.parse(reply)
        except FormatError as exc:  # no grammar here: the model's mistake, not our bug
            raise PolicyError(
                f"the model's reply does not follow the Ophiuchus format (decoding is not "
                f"grammar-constrained on onnx_trt): {exc}"
            ) from None
        if parsed.tool is None:
            evidence = (len(context.workspace) - 1,)  # the newest image in the read
            return Answer(parsed.answer, (Claim(parsed.answer, evidence),), parsed.thought, usage)
        return ToolCall(parsed.tool, parsed.arguments, parsed.thought, usage)

    def close(self) -> None:
        """The decoder stays loaded; the cache goes with the session."""
        self.cache = None
