"""The vision-language model exported to ONNX (`edge-agent export onnx-llm`) drives the tools on
ONNX Runtime, providers TensorRT -> CUDA -> CPU, one KV cache per read.

Turn k evaluates only what turn k adds: the new images through the vision encoder, their
embeddings in place of their <|image_pad|> tokens, and the new text, at their M-RoPE positions
after the cache. The prompt format is the same as llama_cpp's (Ophiuchus for images, MedScope for
a cine or video). Decoding is greedy under the same GBNF grammar (token masks from llguidance), so
each reply is a valid call or an answer; with `grammar = false` it is unconstrained, and a reply
that does not follow the format ends the read with a recorded policy error. The turn loop is the
shared `ModelSession`; this module is its ONNX Runtime back end."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.agent import PolicyError, ReadContext
from edge_agent.formats import chosen_profile, format_for, shown_size
from edge_agent.grammar import Constraint, GrammarError, TokenGrammar
from edge_agent.onnx_decoder import KvCache, OnnxDecoder, OnnxVision, turn_chunks
from edge_agent.policies.llama_cpp import DISCLAIMER
from edge_agent.policies.model_settings import OnnxTrtSettings
from edge_agent.policies.session import ModelSession, Prompt, SessionState, Stream
from edge_agent.trajectory import PolicyRecord
from edge_agent.vision_inputs import mrope_positions
from imaging.errors import BadInput, ConfigError
from tools.workspace import ShownSize

log = logging.getLogger(__name__)

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"  # one pad, widened to the image's tokens


@dataclass
class KeptPrefix:
    """The KV cache of the reads' shared head (the system prompt), kept across reads."""

    text: str = ""
    tensors: list[np.ndarray] = field(default_factory=list)
    position: int = 0
    last: KvCache | None = None  # the last read's whole cache: a follow-up continues it


class OnnxTrtPolicy:
    def __init__(self, settings: OnnxTrtSettings, stream: Stream | None = None) -> None:
        """The decoder is loaded here (a bad folder is a ConfigError before any read)."""
        if not settings.model_dir:
            raise ConfigError(
                "--policy onnx-trt needs a model folder: give --model FOLDER (written by "
                "`edge-agent export onnx-llm`), or [policy.onnx_trt] model_dir in the config"
            )
        if not Path(settings.model_dir).is_dir():
            raise ConfigError(
                f"[policy.onnx_trt] model_dir = {settings.model_dir!r}: no such folder "
                "(write one with `edge-agent export onnx-llm`)"
            )
        self.settings = settings
        self._stream = stream
        self._kept = KeptPrefix()
        self._decoder = OnnxDecoder(Path(settings.model_dir), settings.runtime)
        try:
            self._profile = chosen_profile(settings.profile, self._decoder.profile)
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
    def shown_size(self) -> ShownSize:
        return shown_size(self._profile, self.settings.image_size)

    def open(self, context: ReadContext) -> ModelSession:
        form = format_for(context, self._profile, self.settings.max_think_tokens or None)
        return ModelSession(self._backend(), form, self._stream)

    def resume(self, context: ReadContext, state: SessionState) -> ModelSession:
        """The last read's session again, its cache kept since: a follow-up continues it."""
        if self._kept.last is None:
            raise BadInput("no read of this model to continue")
        backend = self._backend()
        backend.cache = self._kept.last
        form = format_for(context, self._profile, self.settings.max_think_tokens or None)
        return ModelSession.resumed(backend, form, state, self._stream)

    def _backend(self) -> OnnxBackend:
        n_ctx = min(self.settings.n_ctx, self._decoder.context_length or self.settings.n_ctx)
        return OnnxBackend(
            self._decoder,
            self._vision,
            n_ctx=n_ctx,
            prefill_chunk=self.settings.prefill_chunk,
            grammar=self._grammar,
            kept=self._kept,
        )

    def close(self) -> None:
        """Idempotent: the vision encoder's and the decoder's sessions are released."""
        if getattr(self, "_vision", None) is not None:
            self._vision.close()
        self._decoder.close()


class OnnxBackend:
    """One read on the loaded decoder: its KV cache, and a turn's ids, image embeddings and
    M-RoPE positions (the session core does the rest)."""

    marker = IMAGE

    def __init__(
        self,
        decoder: OnnxDecoder,
        vision: OnnxVision,
        *,
        n_ctx: int,
        prefill_chunk: int,
        grammar: TokenGrammar | None = None,
        kept: KeptPrefix | None = None,
    ) -> None:
        self.decoder = decoder
        self.kept = kept if kept is not None else KeptPrefix()
        self.vision = vision
        self.n_ctx = n_ctx
        self.prefill_chunk = prefill_chunk
        self.grammar = grammar  # a TokenGrammar, or None: unconstrained
        self.constrained = grammar is not None
        self.cache = KvCache(decoder.shape)
        self.logits: np.ndarray | None = None  # of the last evaluated position

    def start(self, prefix: str) -> tuple[int, int]:
        """A fresh cache that starts with the kept prefix's keys and values (the decoder never
        writes into them: each call returns new arrays), or with the prefix evaluated now."""
        kept, self.cache = self.kept, KvCache(self.decoder.shape)
        if prefix and kept.text == prefix:
            self.cache.tensors, self.cache.position = list(kept.tensors), kept.position
            return self.cache.length, 0
        if not prefix:
            return 0, 0
        with self.prompt(prefix, []) as head:
            evaluated = self.evaluate(head)
        kept.text, kept.tensors, kept.position = prefix, list(self.cache.tensors), head.tokens
        return evaluated, evaluated

    @contextmanager
    def prompt(self, text: str, pictures: list[np.ndarray]) -> Iterator[Prompt]:
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
        yield Prompt(len(widened), len(embeds), (widened, embeds, positions))

    def evaluate(self, prompt: Prompt) -> int:
        """The prompt in chunks after the cache (bounds the logits' memory); all of it is new."""
        ids, embeds, positions = prompt.handle
        pad = self.vision.image_token_id
        for part, rows, where in turn_chunks(ids, embeds, positions, self.prefill_chunk, pad):
            self.logits = self.decoder.forward(
                part, self.cache, rows if len(rows) else None, where
            )[-1]
        return len(ids)

    @contextmanager
    def reply(self, gbnf: str | None) -> Iterator[OnnxReply]:
        with _grammar_bug():
            constraint = self.grammar.start(gbnf) if self.grammar and gbnf is not None else None
        yield OnnxReply(self, constraint)

    def is_end(self, token: int) -> bool:
        return token in self.decoder.end_ids

    def tokenize(self, text: str) -> list[int]:
        return list(self.decoder.tokenize(text))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.decoder.detokenize(list(tokens))

    def close(self) -> None:
        """The decoder stays loaded; the cache is kept until the next read (for follow-ups)."""
        self.kept.last, self.cache = self.cache, None
        self.logits = None


class OnnxReply:
    """One reply, greedy: the same context gives the same reply; masked by the grammar when
    there is one."""

    def __init__(self, backend: OnnxBackend, constraint: Constraint | None) -> None:
        self._backend = backend
        self._constraint = constraint

    def next_token(self) -> int:
        logits = self._backend.logits
        if self._constraint is not None:
            with _grammar_bug():
                logits = self._constraint.mask(logits)
        return int(np.argmax(logits))

    def feed(self, token: int) -> None:
        if self._constraint is not None:
            with _grammar_bug():
                self._constraint.accept(token)
        backend = self._backend
        backend.logits = backend.decoder.forward([token], backend.cache)[-1]

    def force(self, token: int) -> None:
        self.feed(token)  # the constraint accepts it (and refuses one the grammar forbids)


@contextmanager
def _grammar_bug() -> Iterator[None]:
    try:
        yield
    except GrammarError as exc:
        log.error("constrained decoding failed: %s", exc)
        raise PolicyError(f"constrained decoding failed (bug): {exc}") from None
