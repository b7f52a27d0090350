"""llama.cpp's sampler chain for one reply: the GBNF grammar, then greedy (temperature 0) or
top-k / top-p / temperature with a seed. Built from llama.cpp's public C API, one native handle
with its owner: the grammar's state follows every sampled token, so a chain serves one reply and
is freed after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class SamplerError(ValueError):
    """llama.cpp refused the grammar or a sampler: our bug, never the model's mistake."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy, deterministic
    top_p: float = 1.0
    seed: int = 0
    top_k: int = 40  # only when temperature > 0


class ReplySampler:
    def __init__(self, llama, gbnf: str | None, sampling: Sampling) -> None:
        """`llama`: a loaded llama_cpp.Llama; tokens are sampled from its context's last logits,
        under `gbnf` (root rule `root`) when given."""
        import llama_cpp

        self._lib = llama_cpp
        self._ctx = llama.ctx
        self._chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        try:
            if gbnf is not None:
                vocab = llama_cpp.llama_model_get_vocab(llama.model)
                grammar = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
                self._add(grammar, "grammar")
            for name, make in _stages(llama_cpp, sampling):
                self._add(make(), name)  # made one at a time: none is left without an owner
        except BaseException:
            self.close()
            raise

    def _add(self, stage, name: str) -> None:
        if not stage:
            raise SamplerError(f"llama.cpp refused the {name} sampler (the GBNF does not parse?)")
        self._lib.llama_sampler_chain_add(self._chain, stage)  # the chain owns it from here

    def sample(self) -> int:
        """The next token from the last evaluated position; the grammar accepts it."""
        return int(self._lib.llama_sampler_sample(self._chain, self._ctx, -1))

    def accept(self, token: int) -> None:
        """A token chosen outside the sampler: the grammar's state follows it."""
        self._lib.llama_sampler_accept(self._chain, token)

    def close(self) -> None:
        """Idempotent; frees the chain and every sampler in it."""
        if self._chain:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None

    def __enter__(self) -> ReplySampler:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _stages(lib, sampling: Sampling) -> list[tuple[str, Callable[[], object]]]:
    if sampling.temperature <= 0:
        return [("greedy", lib.llama_sampler_init_greedy)]
    return [
        ("top-k", lambda: lib.llama_sampler_init_top_k(sampling.top_k)),
        ("top-p", lambda: lib.llama_sampler_init_top_p(sampling.top_p, 1)),
        ("temperature", lambda: lib.llama_sampler_init_temp(sampling.temperature)),
        ("dist", lambda: lib.llama_sampler_init_dist(sampling.seed)),
    ]
