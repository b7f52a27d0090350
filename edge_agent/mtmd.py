"""One owner for a GGUF vision-language model on llama.cpp: the text model with its context and
the mmproj (MTMD) context. close() frees the MTMD context before the model it refers to."""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imaging.atomic import atomic_path
from imaging.errors import ModelLoadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SavedState:
    """A KV cache saved: the file's size, and the position after its last token."""

    bytes: int
    next_position: int


def _silence(mtmd) -> None:
    """mtmd logs every text part and image batch to stderr; the service has its own logs."""
    import llama_cpp

    global _QUIET
    if _QUIET is None:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        mtmd.mtmd_log_set(_QUIET, None)
        mtmd.mtmd_helper_log_set(_QUIET, None)


_QUIET = None  # the callback must outlive every call into the library


class MultimodalModel:
    def __init__(
        self,
        model_path: Path,
        mmproj_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        flash_attn: bool = False,
    ) -> None:
        import llama_cpp
        from llama_cpp import Llama
        from llama_cpp import mtmd_cpp as mtmd

        self._mtmd_lib = mtmd
        _silence(mtmd)
        for path in (model_path, mmproj_path):
            if not Path(path).is_file():
                raise ModelLoadError(f"model file {path} does not exist")
        try:
            self.llama = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_batch=min(n_ctx, 512),
                n_threads=n_threads,
                n_gpu_layers=n_gpu_layers,
                flash_attn=flash_attn,
                logits_all=False,
                verbose=False,
            )
        except ValueError as exc:
            raise ModelLoadError(f"llama.cpp cannot load {model_path}: {exc}") from None
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = n_gpu_layers != 0
        params.print_timings = False
        params.warmup = False
        params.n_threads = self.llama.n_threads
        self._batch = None
        # clip's configuration, mtmd's text parts and image batches go to the log callbacks
        # `_silence` set, not to stderr: no file-descriptor redirection is needed
        self._ctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), self.llama.model, params)
        if not self._ctx:
            self.llama.close()
            raise ModelLoadError(f"llama.cpp cannot load the mmproj {mmproj_path}")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelLoadError(f"{mmproj_path} has no vision encoder")
        self._batch = llama_cpp.llama_batch_init(1, 0, 1)  # one reply token at a time
        self._prefix: tuple[str, int] | None = None  # the text at the head of the cache, tokens

    @property
    def marker(self) -> str:
        return self._mtmd_lib.mtmd_default_marker().decode()

    def image_embedding(self, rgb: np.ndarray) -> np.ndarray:
        """The mmproj's output for one image: (image tokens, embedding size)."""
        mtmd = self._mtmd_lib
        chunks = self.tokenize(self.marker, [rgb])
        try:
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    if mtmd.mtmd_encode_chunk(self._ctx, chunk) != 0:
                        raise RuntimeError("mtmd_encode_chunk failed")
                    count = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                    width = self.llama.n_embd()
                    embd = mtmd.mtmd_get_output_embd(self._ctx)
                    return (
                        np.ctypeslib.as_array(embd, shape=(count * width,))
                        .reshape(count, width)
                        .copy()
                    )
        finally:
            self.free(chunks)
        raise RuntimeError("the prompt produced no image chunk")

    def tokenize(self, text: str, images: list[np.ndarray]):
        """Text with one marker per image -> MTMD input chunks (the caller frees them)."""
        mtmd = self._mtmd_lib
        bitmaps = [_bitmap(mtmd, image) for image in images]
        try:
            chunks = mtmd.mtmd_input_chunks_init()
            encoded = text.encode()
            prompt = mtmd.mtmd_input_text(
                text=encoded, text_len=len(encoded), add_special=False, parse_special=True
            )
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            code = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(prompt), array, len(bitmaps))
            if code != 0:
                mtmd.mtmd_input_chunks_free(chunks)
                raise ValueError(f"mtmd_tokenize failed ({code}): markers vs images mismatch?")
            return chunks
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def token_counts(self, chunks) -> tuple[int, int]:
        """(text tokens, image tokens) in the chunks."""
        mtmd = self._mtmd_lib
        text = image = 0
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            count = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                image += count
            else:
                text += count
        return text, image

    def eval_chunks(self, chunks, n_past: int) -> int:
        """Decode chunks (text and images) into the KV cache after position `n_past`; returns the
        new position. Only what is passed is evaluated: earlier context stays cached."""
        import llama_cpp

        new_past = llama_cpp.llama_pos(0)
        code = self._mtmd_lib.mtmd_helper_eval_chunks(
            self._ctx,
            self.llama.ctx,
            chunks,
            n_past,
            0,
            self.llama.n_batch,
            True,
            ctypes.byref(new_past),
        )
        if code != 0:
            raise RuntimeError(f"evaluating the prompt failed (code {code}); context full?")
        return new_past.value

    def eval_token(self, token: int, n_past: int) -> int:
        """Decode one token at position `n_past` (its logits become the next sample's); returns
        the next position. The position is the caller's: after an M-RoPE image it runs behind
        the number of tokens in the cache, which llama-cpp-python's own `Llama.eval` assumes."""
        import llama_cpp

        batch = self._batch
        batch.n_tokens = 1
        batch.token[0] = token
        batch.pos[0] = n_past
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = 1
        code = llama_cpp.llama_decode(self.llama.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode failed (code {code}) at position {n_past}")
        return n_past + 1

    def is_end(self, token: int) -> bool:
        """End of generation: the tokens the grammar allows once a reply is complete."""
        import llama_cpp

        return bool(
            llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(self.llama.model), token)
        )

    def next_logits(self) -> np.ndarray:
        import llama_cpp

        logits = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(self.llama.n_vocab(),)).copy()

    def clear(self) -> None:
        """An empty context: no cached tokens, llama.cpp's counters back to zero."""
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.llama.ctx), True)
        llama_cpp.llama_perf_context_reset(self.llama.ctx)
        self._prefix = None

    def keep_prefix(self, text: str) -> tuple[int, int]:
        """The cache holds `text` (no images) and nothing after it: what followed it is removed
        when it is already at the head of the cache, else it is evaluated into an empty one.
        Returns (its tokens, the tokens evaluated now); llama.cpp's counters start again."""
        import llama_cpp

        kept = self._prefix
        memory = llama_cpp.llama_get_memory(self.llama.ctx)
        # positions from the prefix's end on; seq 0 is the only sequence a read uses
        if (
            text
            and kept is not None
            and kept[0] == text
            and llama_cpp.llama_memory_seq_rm(memory, 0, kept[1], -1)
        ):
            self._reset_counters()
            return kept[1], 0
        self.clear()
        if not text:
            return 0, 0
        chunks = self.tokenize(text, [])
        try:
            count = self.eval_chunks(chunks, 0)
        finally:
            self.free(chunks)
        self._prefix = (text, count)
        self._reset_counters()
        return count, count

    def _reset_counters(self) -> None:
        """llama.cpp adds what it evaluated to its counters on synchronize: first that, then
        the reset, or the prefix would be counted again by the next turn."""
        import llama_cpp

        llama_cpp.llama_synchronize(self.llama.ctx)
        llama_cpp.llama_perf_context_reset(self.llama.ctx)

    def resume(self) -> int:
        """The cache as it is (the last read's, or one loaded): counters start again; returns
        the position after its last one (seq 0), where the next token goes."""
        self._reset_counters()
        return self.next_position()

    def next_position(self) -> int:
        """The position after the last one in seq 0's cache: with M-RoPE images, fewer than the
        tokens it holds, but the same for a state saved and the same state loaded."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.llama.ctx)
        return int(llama_cpp.llama_memory_seq_pos_max(memory, 0)) + 1

    def save_state(self, path: Path) -> SavedState:
        """The KV cache of seq 0 into `path` (llama.cpp's own file format), whole or not at all:
        written beside it and renamed over, so a crash leaves the state saved before."""
        import llama_cpp

        llama_cpp.llama_synchronize(self.llama.ctx)
        none = (llama_cpp.llama_token * 1)()
        with atomic_path(path) as temporary:
            written = llama_cpp.llama_state_seq_save_file(
                self.llama.ctx, str(temporary).encode(), 0, none, 0
            )
            if written == 0:
                raise RuntimeError(f"llama.cpp could not save the session to {path}")
        return SavedState(int(written), self.next_position())

    def load_state(self, path: Path) -> int:
        """A KV cache `save_state` wrote, as this context's seq 0 (what it held goes); returns
        the position after its last one, to check against what the save recorded."""
        import llama_cpp

        self.clear()
        tokens, count = (llama_cpp.llama_token * 1)(), ctypes.c_size_t(0)
        read = llama_cpp.llama_state_seq_load_file(
            self.llama.ctx, str(path).encode(), 0, tokens, 1, ctypes.byref(count)
        )
        if read == 0:
            self.clear()
            raise ModelLoadError(f"llama.cpp cannot load the session {path} into this model")
        return self.next_position()

    def free(self, chunks) -> None:
        self._mtmd_lib.mtmd_input_chunks_free(chunks)

    def prompt_evaluated(self) -> int:
        """llama.cpp's own count of prompt tokens evaluated in this context (at least 1, as
        llama.cpp reports it)."""
        import llama_cpp

        llama_cpp.llama_synchronize(self.llama.ctx)  # the counters are updated on synchronize
        return int(llama_cpp.llama_perf_context(self.llama.ctx).n_p_eval)

    def generate(self, prompt: str, images: list[np.ndarray], max_tokens: int = 32) -> str:
        """Greedy completion of one prompt from an empty cache (for checks, not for reads)."""
        self.clear()
        chunks = self.tokenize(prompt, images)
        try:
            n_past = self.eval_chunks(chunks, 0)
        finally:
            self.free(chunks)
        tokens = []
        for _ in range(max_tokens):
            token = int(np.argmax(self.next_logits()))
            if self.is_end(token):
                break
            tokens.append(token)
            n_past = self.eval_token(token, n_past)
        return self.llama.detokenize(tokens).decode("utf-8", errors="replace")

    def close(self) -> None:
        """Idempotent; the MTMD context goes before the model it points into."""
        if getattr(self, "_batch", None) is not None:
            import llama_cpp

            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            self._mtmd_lib.mtmd_free(self._ctx)
            self._ctx = None
        if getattr(self, "llama", None) is not None:
            self.llama.close()
            self.llama = None

    def __enter__(self) -> MultimodalModel:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _bitmap(mtmd, rgb: np.ndarray):
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"images must be RGB uint8 (h, w, 3), got {rgb.dtype} {rgb.shape}")
    data = np.ascontiguousarray(rgb)
    buffer = (ctypes.c_uint8 * data.size).from_buffer_copy(data.tobytes())
    bitmap = mtmd.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], buffer)
    if not bitmap:
        raise RuntimeError("mtmd_bitmap_init failed")
    return bitmap
