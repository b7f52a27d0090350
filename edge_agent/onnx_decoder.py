"""Owners for the ONNX models written by `edge-agent export onnx-llm`: the text decoder (ONNX
Runtime session, tokenizer, the names of its inputs and outputs) and the vision encoder. The KV
cache lives in a `KvCache` per read; the decoder only reads and replaces it.

The decoder's I/O is optimum's: input_ids, attention_mask, position_ids (3, batch, seq) for
M-RoPE, past_key_values.N.key/value -> logits, present.N.key/value; plus image_embeds, one row
per <|image_pad|> token in input_ids (none for text)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.vision_inputs import VisionSpec, image_inputs
from imaging.errors import ModelLoadError
from imaging.model_folder import ModelFolder
from tools.onnx_runtime import OnnxModel, RuntimeSettings

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
        self.position = 0  # the next M-RoPE position: past an image it is less than `length`

    @property
    def length(self) -> int:
        return int(self.tensors[0].shape[2])


class OnnxDecoder:
    """Loaded once per policy: checked against its manifest, then kept across reads."""

    def __init__(self, model_dir: Path, runtime: RuntimeSettings) -> None:
        self.folder = ModelFolder.read(model_dir, FORMAT, what="onnx-llm model folder")
        self.dir = self.folder.path
        self.fields = self.folder.manifest.fields  # the kind's own: decoder, vision
        self.profile = self.folder.manifest.profile
        spec = self.fields.get("decoder")
        try:
            self.shape = DecoderShape(
                int(spec["layers"]),
                int(spec["kv_heads"]),
                int(spec["head_dim"]),
                int(spec["vocab"]),
            )
            self.context_length = int(spec.get("context_length") or 0)
            eos = [int(token) for token in spec["eos_token_ids"]]
            self.folder.check_all()
            self.sha256 = self.folder.named(spec["file"]).sha256
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{self.dir}/manifest.json is incomplete: {exc!r}") from None
        self.tokenizer = _tokenizer(self.dir / "tokenizer.json")
        self.end_ids = frozenset([*eos, *(self.tokenizer.token_to_id(t) for t in END_TOKENS)]) - {
            None
        }
        self.hidden = int(spec.get("hidden_size") or 0)
        self.model = OnnxModel(self.dir / self.file, runtime)
        inputs = {"input_ids", "position_ids", "image_embeds", *self.shape.past_names()}
        missing = inputs - set(self.model.input_names)
        if missing:
            self.close()
            raise ModelLoadError(f"{spec['file']} lacks the decoder inputs {sorted(missing)}")

    @property
    def file(self) -> str:
        return self.fields["decoder"]["file"]

    def sha256_of(self, name: str) -> str:
        """A file's SHA-256 from the manifest (every file was checked against it on load)."""
        return self.folder.named(name).sha256

    @property
    def provider(self) -> str:
        return self.model.provider

    def tokenize(self, text: str) -> list[int]:
        """Chat text -> ids; the chat markers (<|im_start|> ...) become their special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def forward(
        self,
        ids: list[int],
        cache: KvCache,
        image_embeds: np.ndarray | None = None,
        positions: np.ndarray | None = None,
    ) -> np.ndarray:
        """Evaluate `ids` after what `cache` holds, extend the cache; the logits of every
        position of `ids` (len(ids), vocab). `positions` (3, len(ids)): M-RoPE rows t, h, w;
        by default text positions (every row the same) after the cache's. `image_embeds`: one
        row per <|image_pad|> in `ids`."""
        count = len(ids)
        if positions is None:
            positions = np.broadcast_to(np.arange(count) + cache.position, (3, count))
        if image_embeds is None:
            image_embeds = np.zeros((0, self.hidden), dtype=np.float32)
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, cache.length + count), dtype=np.int64),
            "position_ids": np.ascontiguousarray(positions[:, None, :], dtype=np.int64),
            "image_embeds": np.ascontiguousarray(image_embeds, dtype=np.float32),
            **dict(zip(self.shape.past_names(), cache.tensors, strict=True)),
        }
        outputs = self.model.run(feeds)
        cache.tensors = [outputs[name] for name in self.shape.present_names()]
        cache.position = max(cache.position, int(positions.max()) + 1)
        return outputs["logits"][0]

    def close(self) -> None:
        """Idempotent: the ONNX Runtime session is released."""
        if getattr(self, "model", None) is not None:
            self.model.close()
            self.model = None


def turn_chunks(
    ids: list[int], image_embeds: np.ndarray, positions: np.ndarray, size: int, image_token_id: int
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """A turn's tokens in decoder calls of at most `size`, each with its own image rows and
    positions (prefill in chunks bounds the logits' memory)."""
    used = 0
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        images = sum(1 for token in part if token == image_token_id)
        yield part, image_embeds[used : used + images], positions[:, start : start + size]
        used += images


class OnnxVision:
    """The exported vision encoder: an RGB image in, one embedding per image token out."""

    def __init__(self, decoder: OnnxDecoder, runtime: RuntimeSettings) -> None:
        record = decoder.fields.get("vision") or {}
        try:
            self.spec = VisionSpec.from_record(record["spec"])
            self.image_token_id = int(record["image_token_id"])
            self.start_id = int(record["vision_start_token_id"])
            self.end_id = int(record["vision_end_token_id"])
            path = decoder.dir / record["file"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(
                f"{decoder.dir}: manifest.json has no usable vision: {exc!r}"
            ) from None
        self.model = OnnxModel(path, runtime)

    def encode(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """(image tokens, hidden) embeddings and the image's patch grid (t, h, w)."""
        feeds, grid = image_inputs(rgb, self.spec)
        return self.model.run(feeds)["image_embeds"], grid

    def close(self) -> None:
        if getattr(self, "model", None) is not None:
            self.model.close()
            self.model = None


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
