"""Grammar-constrained decoding where llama.cpp's sampler is not there (ONNX Runtime): the same
GBNF the llama_cpp policy uses, turned into a token mask per step by llguidance.

`TokenGrammar` is built once per model (it indexes the vocabulary); `start(gbnf)` gives one
`Constraint` per reply, which masks the logits before each greedy pick and follows the pick."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tools.onnx_runtime import ModelLoadError

log = logging.getLogger(__name__)


class GrammarError(Exception):
    """The grammar or the constrained decoding failed: our bug, never the model's mistake."""


class TokenGrammar:
    def __init__(self, tokenizer_json: Path, vocab: int, end_ids: frozenset[int]) -> None:
        try:
            import llguidance
        except ImportError:
            raise ModelLoadError(
                "grammar-constrained decoding needs llguidance (pip install 'edge-agent[onnx]'), "
                "or set grammar = false"
            ) from None
        self._llguidance = llguidance
        self.vocab = vocab
        self.end_ids = end_ids
        self._tokenizer = llguidance.LLTokenizer(
            str(tokenizer_json), n_vocab=vocab, eos_token=sorted(end_ids)
        )

    def start(self, gbnf: str) -> Constraint:
        """A fresh constraint for one reply under `gbnf`."""
        try:
            grammar = self._llguidance.grammar_from("gbnf", gbnf)
        except ValueError as exc:
            raise GrammarError(f"the reply grammar does not convert: {exc}") from None
        matcher = self._llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(f"the reply grammar is invalid: {matcher.get_error()}")
        return Constraint(matcher, self.vocab)


class Constraint:
    """Where one reply stands in the grammar."""

    def __init__(self, matcher, vocab: int) -> None:
        self._matcher = matcher
        self._vocab = vocab

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """The logits with every token the grammar forbids next set to -inf."""
        words = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(words, bitorder="little")[: self._vocab].astype(bool)
        if self._matcher.is_error() or not allowed.any():
            raise GrammarError(f"no token is allowed: {self._matcher.get_error() or 'dead end'}")
        masked = np.full_like(logits, -np.inf)
        count = min(len(logits), len(allowed))
        masked[:count] = np.where(allowed[:count], logits[:count], -np.inf)
        return masked

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise GrammarError(f"token {token} refused: {self._matcher.get_error()}")
