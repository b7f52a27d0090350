"""One owner for an ONNX text decoder written by `edge-agent export onnx-llm`: the ONNX Runtime
session, the tokenizer, and the names of the decoder's inputs and outputs. The KV cache lives in a
`KvCache` per read; the decoder only reads and replaces it.

The I/O contract is optimum's: input_ids, attention_mask, position_ids (3, batch, seq) for
M-RoPE, past_key_values.N.key/value -> logits, present.N.key/value."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.checksum import sha256_file
from tools.onnx_runtime import ModelLoadError, OnnxModel, RuntimeSettings

log = logging.getLogger(__name__)

FORMAT = "edge-agent onnx-llm export 1"
END_TOKENS = ("<|im_end|>", "<|endoftext|>")  # the Qwen chat template's ends of a reply


@dataclass(frozen=True)
class DecoderShape:
    """The decoder's layer count and the shape of its KV cache."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab: int

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]


class KvCache:
    """The keys and values of every position evaluated so far in one read."""

    def __init__(self, shape: DecoderShape) -> None:
        empty = np.zeros((1, shape.kv_heads, 0, shape.head_dim), dtype=np.float32)
        self.tensors = [empty] * (2 * shape.layers)

    @property
    def length(self) -> int:
        return int(self.tensors[0].shape[2])


class OnnxDecoder:
    """Loaded once per policy: checked against its manifest, then kept across reads."""

    def __init__(self, model_dir: Path, runtime: RuntimeSettings) -> None:
        self.dir = Path(model_dir)
        self.manifest = _manifest(self.dir)
        spec = self.manifest["decoder"]
        try:
            self.shape = DecoderShape(
                int(spec["layers"]),
                int(spec["kv_heads"]),
                int(spec["head_dim"]),
                int(spec["vocab"]),
            )
            self.context_length = int(spec.get("context_length") or 0)
            eos = [int(token) for token in spec["eos_token_ids"]]
            self.sha256 = _check_files(self.dir, self.manifest)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{self.dir}/manifest.json is incomplete: {exc!r}") from None
        self.tokenizer = _tokenizer(self.dir / "tokenizer.json")
        self.end_ids = frozenset([*eos, *(self.tokenizer.token_to_id(t) for t in END_TOKENS)]) - {
            None
        }
        self.model = OnnxModel(self.dir / self.file, runtime)
        missing = {"input_ids", "position_ids", *self.shape.past_names()} - set(
            self.model.input_names
        )
        if missing:
            self.close()
            raise ModelLoadError(f"{spec['file']} lacks the decoder inputs {sorted(missing)}")

    @property
    def file(self) -> str:
        return self.manifest["decoder"]["file"]

    @property
    def provider(self) -> str:
        return self.model.provider

    def tokenize(self, text: str) -> list[int]:
        """Chat text -> ids; the chat markers (<|im_start|> ...) become their special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def forward(self, ids: list[int], cache: KvCache) -> np.ndarray:
        """Evaluate `ids` after what `cache` holds, extend the cache; the logits of every
        position of `ids` (len(ids), vocab). Text positions: every M-RoPE row is the index."""
        count, past = len(ids), cache.length
        positions = np.arange(past, past + count, dtype=np.int64)
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, past + count), dtype=np.int64),
            "position_ids": np.broadcast_to(positions, (3, 1, count)).copy(),
            **dict(zip(self.shape.past_names(), cache.tensors, strict=True)),
        }
        outputs = self.model.run(feeds)
        cache.tensors = [outputs[name] for name in self.shape.present_names()]
        return outputs["logits"][0]

    def close(self) -> None:
        """Idempotent: the ONNX Runtime session is released."""
        if getattr(self, "model", None) is not None:
            self.model.close()
            self.model = None


def _manifest(model_dir: Path) -> dict:
    path = model_dir / "manifest.json"
    if not path.is_file():
        raise ModelLoadError(
            f"{model_dir} has no manifest.json: not a folder written by `edge-agent export "
            "onnx-llm`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("decoder"), dict)
    ):
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ModelLoadError(f"{path} is format {found!r}, not {FORMAT!r}")
    return manifest


def _check_files(model_dir: Path, manifest: dict) -> str:
    """Every decoder file is there with the hash the export wrote; returns the graph's hash."""
    digests = {}
    for entry in manifest["files"]:
        if not entry["role"].startswith("decoder"):
            continue
        path = model_dir / entry["name"]
        if not path.is_file():
            raise ModelLoadError(f"{path} is missing (listed in manifest.json)")
        digests[entry["name"]] = sha256_file(path)
        if digests[entry["name"]] != entry["sha256"]:
            raise ModelLoadError(f"{path} does not match the SHA-256 in manifest.json")
    return digests[manifest["decoder"]["file"]]


def _tokenizer(path: Path):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ModelLoadError(
            "tokenizers is not installed (pip install 'edge-agent[onnx]')"
        ) from None
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: the export copies the checkpoint's tokenizer")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a damaged file
        raise ModelLoadError(f"{path} is not a tokenizer file: {exc}") from None
