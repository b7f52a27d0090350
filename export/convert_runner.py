"""Runs llama.cpp's convert_hf_to_gguf.py from a converter folder, with an optional explicit
pre-tokenizer override. The one place that knows where the converter decides the pre-tokenizer
(`conversion/base.py`, `TextModel.get_vocab_base_pre`): the override replaces that method, and the
names it can return are the ones an override may name.

Usage: python -m export.convert_runner DIR PRE_TOKENIZER CONVERTER_ARGS..."""

from __future__ import annotations

import ast
import importlib
import logging
import runpy
import sys
from pathlib import Path

DECIDER = ("conversion/base.py", "TextModel", "get_vocab_base_pre")


def known_pre_tokenizers(converter: Path) -> tuple[str, ...]:
    """Every name the converter's own detection can write (its `res = "..."` lines), read from
    its source without running it; empty when the converter is laid out another way."""
    path, owner, method = DECIDER
    try:
        tree = ast.parse((converter / path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return ()
    classes = (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner)
    functions = (
        n for c in classes for n in c.body if isinstance(n, ast.FunctionDef) and n.name == method
    )
    return tuple(
        sorted(
            {
                node.value.value
                for function in functions
                for node in ast.walk(function)
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "res" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            }
        )
    )


def main() -> None:
    converter, pre_tokenizer, *arguments = sys.argv[1:]
    root = Path(converter)
    # The converter's own gguf package first: it must match the converter, not the installed one.
    sys.path[:0] = [str(root), str(root / "gguf-py")]
    if pre_tokenizer:
        path, owner, method = DECIDER
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))

        def forced(self, tokenizer) -> str:
            logging.getLogger("edge-agent").warning("pre-tokenizer forced: %s", pre_tokenizer)
            return pre_tokenizer

        setattr(getattr(module, owner), method, forced)
    sys.argv = [str(root / "convert_hf_to_gguf.py"), *arguments]
    runpy.run_path(str(root / "convert_hf_to_gguf.py"), run_name="__main__")


if __name__ == "__main__":
    main()
