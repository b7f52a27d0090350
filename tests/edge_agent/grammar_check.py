"""Runs a GBNF grammar in llama.cpp's own grammar sampler over a text, token by token, with a real
vocabulary (the tiny GGUF's): the grammar either lets every token of the text through and then
allows the end of the reply, or it refuses."""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp


class GrammarCheck:
    def __init__(self, gguf: Path) -> None:
        self.llama = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        self.end = self.llama.token_eos()

    def accepts(self, grammar: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if not sampler:
            raise ValueError("llama.cpp refused the grammar")
        try:
            tokens = self.llama.tokenize(text.encode(), add_bos=False, special=False)
            for token in tokens:
                if not self._allowed(sampler, token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return self._allowed(sampler, self.end)  # the reply may end here
        finally:
            llama_cpp.llama_sampler_free(sampler)

    @staticmethod
    def _allowed(sampler, token: int) -> bool:
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 1.0, 0.0))
        candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return data[0].logit != float("-inf")

    def close(self) -> None:
        self.llama.close()
