"""Runs llama.cpp's convert_hf_to_gguf.py from a converter folder, with an optional explicit
pre-tokenizer override.

Usage: python -m export.convert_runner DIR PRE_TOKENIZER CONVERTER_ARGS..."""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path


def main() -> None:
    converter, pre_tokenizer, *arguments = sys.argv[1:]
    root = Path(converter)
    # The converter's own gguf package first: it must match the converter, not the installed one.
    sys.path[:0] = [str(root), str(root / "gguf-py")]
    if pre_tokenizer:
        from conversion.base import TextModel

        def forced(self, tokenizer) -> str:
            logging.getLogger("edge-agent").warning("pre-tokenizer forced: %s", pre_tokenizer)
            return pre_tokenizer

        TextModel.get_vocab_base_pre = forced
    sys.argv = [str(root / "convert_hf_to_gguf.py"), *arguments]
    runpy.run_path(str(root / "convert_hf_to_gguf.py"), run_name="__main__")


if __name__ == "__main__":
    main()
