"""The vision-language model exported to ONNX (`edge-agent export onnx-llm`) drives the tools on
ONNX Runtime, providers TensorRT -> CUDA -> CPU, one KV cache per read.

Turn k evaluates only what turn k adds: the new images through the vision encoder, their
embeddings in place of their <|image_pad|> tokens, and the new text, at their M-RoPE positions
after the cache. The prompt format is the same as llama_cpp's (Ophiuchus for images, MedScope for
a cine or video). Decoding is greedy under the same GBNF grammar (token masks from llguidance), so
each reply is a valid call or an answer; with `grammar = false` it is unconstrained, and a reply
that does not follow the format ends the read with a recorded policy error."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.agent import Decision, PolicyError, ReadContext
from imaging.errors import ConfigError
from edge_agent.formats import format_for, load_profile
from edge_agent.formats.chat import decision, turn_input
from edge_agent.formats.gbnf import FormatError
from edge_agent.formats.medscope import MedScopeFormat
from edge_agent.formats.ophiuchus import OphiuchusFormat
from edge_agent.grammar import Constraint, GrammarError, TokenGrammar
from edge_agent.onnx_decoder import KvCache, OnnxDecoder, OnnxVision, turn_chunks
from edge_agent.policies.llama_cpp import DISCLAIMER
from edge_agent.trajectory import PolicyRecord
from edge_agent.vision_inputs import mrope_positions
from tools.onnx_runtime import RuntimeSettings

log = logging.getLogger(__name__)

Stream = Callable[[str], None]

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"  # one pad, widened to the image's tokens


@dataclass(frozen=True)
class OnnxTrtSettings:
    model_dir: str = ""  # folder written by `edge-agent export onnx-llm`
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    n_ctx: int = 8192  # capped at the checkpoint's context length
    prefill_chunk: int = 256  # prompt tokens per decoder call: bounds the logits' memory
    grammar: bool = True  # replies constrained to the format; false: free, mistakes end the read
    max_think_tokens: int = 0  # a reply's thought; 0: the prompt profile's default
    profile: str = ""  # prompt profile, by name or file; "": the default for the read
    image_size: int = 512  # shown images fit this long side, as the model was trained

    def __post_init__(self) -> None:
        if self.n_ctx < 1 or self.prefill_chunk < 1:
            raise ValueError("n_ctx and prefill_chunk must be >= 1")


class OnnxTrtPolicy:
    def __init__(self, settings: OnnxTrtSettings, stream: Stream | None = None) -> None:
        """The decoder is loaded here (a bad folder is a ConfigError before any read)."""
        if not settings.model_dir or not Path(settings.model_dir).is_dir():
            raise ConfigError(
                f"[policy.onnx_trt] model_dir = {settings.model_dir!r}: no such folder "
                "(write one with `edge-agent export onnx-llm`)"
            )
        self.settings = settings
        self._profile = load_profile(settings.profile) if settings.profile else None
        self._stream = stream
        self._decoder = OnnxDecoder(Path(settings.model_dir), settings.runtime)
        try:
            self._vision = OnnxVision(self._decoder, settings.runtime)
            self._grammar = self._token_grammar() if settings.grammar else None
            self._record = self._policy_record(settings)
        except BaseException:
            self.close()
            raise

    def _policy_record(self, settings: OnnxTrtSettings) -> PolicyRecord:
        vision_file = self._vision.model.path.name
        return PolicyRecord(
            name="onnx_trt",
            label=f"AI model {self._decoder.file} (ONNX Runtime, {self._decoder.provider})",
            disclaimer=DISCLAIMER,
            model={
                "file": self._decoder.file,
                "sha256": self._decoder.sha256,
                "vision": vision_file,
                "vision_sha256": self._decoder.sha256_of(vision_file),
                "provider": self._decoder.provider,
                "vision_provider": self._vision.model.provider,
                "grammar": "gbnf (llguidance)" if settings.grammar else "none",
            },
        )

    def _token_grammar(self) -> TokenGrammar:
        return TokenGrammar(
            self._decoder.dir / "tokenizer.json", self._decoder.shape.vocab, self._decoder.end_ids
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
            self._vision,
            format_for(context, self._profile, self.settings.max_think_tokens or None),
            n_ctx=n_ctx,
            prefill_chunk=self.settings.prefill_chunk,
            grammar=self._grammar,
            stream=self._stream,
        )

    def close(self) -> None:
        """Idempotent: the vision encoder's and the decoder's sessions are released."""
        if getattr(self, "_vision", None) is not None:
            self._vision.close()
        self._decoder.close()


class OnnxSession:
    """One read: its KV cache and how much of the read the model has already seen."""

    def __init__(
        self,
        decoder: OnnxDecoder,
        vision: OnnxVision,
        form: OphiuchusFormat | MedScopeFormat,
        *,
        n_ctx: int,
        prefill_chunk: int,
        grammar: TokenGrammar | None = None,
        stream: Stream | None = None,
    ) -> None:
        self.decoder = decoder
        self.vision = vision
        self.format = form
        self.n_ctx = n_ctx
        self.prefill_chunk = prefill_chunk
        self.grammar = grammar  # a TokenGrammar, or None: unconstrained
        self.stream = stream
        self.cache = KvCache(decoder.shape)
        self.seen = 0  # workspace images already in the context
        self.pending = ""  # text the next turn must start with (the end of the last reply)

    def step(self, context: ReadContext) -> Decision:
        started = time.perf_counter()
        text, images = turn_input(self.format, context, self.seen, IMAGE, self.pending)
        self.seen = len(context.workspace)
        ids, embeds, positions = self._turn_input(text, images)
        self._check_room(len(ids), context.budget.max_new_tokens)
        past = self.cache.length
        logits = self._prefill(ids, embeds, positions)
        usage = {
            "past": past,  # positions already in the KV cache: earlier turns, not evaluated again
            "prompt_tokens": len(ids),
            "prompt_evaluated": len(ids),
            "image_tokens": len(embeds),
            "images": len(images),
            "prefill_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        decode_start = time.perf_counter()
        reply, generated = self._reply(logits, context)
        usage.update(
            generated=generated, decode_ms=round((time.perf_counter() - decode_start) * 1000, 1)
        )
        return self._decision(reply, context, usage)

    def _turn_input(
        self, text: str, pictures: list[np.ndarray]
    ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Token ids with each image's single pad widened to its embeddings, the embeddings in
        order, and every token's M-RoPE position after the cache."""
        pad = self.vision.image_token_id
        ids = self.decoder.tokenize(text)
        if ids.count(pad) != len(pictures):  # e.g. a question that spells <|image_pad|>
            raise PolicyError(
                f"the turn holds {ids.count(pad)} image tokens for {len(pictures)} images"
            )
        try:
            encoded = [self.vision.encode(picture) for picture in pictures]
        except ValueError as exc:  # e.g. a zoom 200 times wider than high
            raise PolicyError(f"an image cannot be encoded for the model: {exc}") from None
        widened, rows = [], iter(encoded)
        for token in ids:
            widened += [pad] * len(next(rows)[0]) if token == pad else [token]
        embeds = np.concatenate([e for e, _ in encoded]) if encoded else np.zeros((0, 0))
        grids = [grid for _, grid in encoded]
        positions = mrope_positions(
            widened, self.cache.position, pad, grids, self.vision.spec.merge_size
        )
        return widened, embeds, positions

    def _check_room(self, prompt_tokens: int, budget: int) -> None:
        if self.cache.length + prompt_tokens + budget > self.n_ctx:
            raise PolicyError(
                f"context full: {self.cache.length} positions used, this turn needs "
                f"{prompt_tokens} more plus up to {budget} for the reply, n_ctx is {self.n_ctx}"
            )

    def _reply(self, logits: np.ndarray, context: ReadContext) -> tuple[str, int]:
        """The reply under the grammar (for the images that exist now), or free."""
        try:
            constraint = None
            if self.grammar is not None:
                constraint = self.grammar.start(self.format.grammar(len(context.workspace)))
            return self._generate(logits, context.budget.max_new_tokens, constraint)
        except GrammarError as exc:
            log.error("constrained decoding failed: %s", exc)
            raise PolicyError(f"constrained decoding failed (bug): {exc}") from None

    def _prefill(self, ids: list[int], embeds: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The prompt in chunks after the cache; the logits of its last position."""
        logits = None
        pad = self.vision.image_token_id
        for part, rows, where in turn_chunks(ids, embeds, positions, self.prefill_chunk, pad):
            logits = self.decoder.forward(part, self.cache, rows if len(rows) else None, where)[-1]
        return logits

    def _generate(
        self, logits: np.ndarray, budget: int, constraint: Constraint | None
    ) -> tuple[str, int]:
        """Greedy, under the grammar when there is one: the same context gives the same reply."""
        tokens: list[int] = []
        for _ in range(budget):
            if constraint is not None:
                logits = constraint.mask(logits)
            token = int(np.argmax(logits))
            if token in self.decoder.end_ids:
                self.pending = "<|im_end|>\n"
                if self.stream:
                    self.stream("\n")
                return self.decoder.detokenize(tokens), len(tokens)
            if constraint is not None:
                constraint.accept(token)
            tokens.append(token)
            if self.stream:
                self.stream(self.decoder.detokenize([token]))
            logits = self.decoder.forward([token], self.cache)[-1]
        if self.stream:
            self.stream("\n")
        raise PolicyError(  # !a: ASCII, the report's DICOM objects carry this text
            f"reply not finished within {budget} tokens{self._unconstrained()}; it began "
            f"{self.decoder.detokenize(tokens)[:120]!a}"
        )

    def _unconstrained(self) -> str:
        return " (decoding is not grammar-constrained: grammar = false)" if not self.grammar else ""

    def _decision(self, reply: str, context: ReadContext, usage: dict) -> Decision:
        try:
            parsed = self.format.parse(reply, len(context.workspace))
        except FormatError as exc:
            if self.grammar is not None:  # the grammar makes this impossible: a bug
                log.error("unparseable reply despite the grammar: %s", exc)
                raise PolicyError(f"model reply did not parse (bug): {exc}") from None
            raise PolicyError(  # unconstrained: the model's mistake
                f"the model's reply does not follow the prompt format{self._unconstrained()}: {exc}"
            ) from None
        return decision(self.format, parsed, context, usage)

    def close(self) -> None:
        """The decoder stays loaded; the cache goes with the session."""
        self.cache = None
