"""A tiny random-weight Qwen2.5-VL in Hugging Face format, for tests: the real export path on a file
of a few hundred kilobytes. Deterministic for a seed; no network."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# The Qwen2 pre-tokenizer's split pattern, so llama.cpp's "qwen2" pre-tokenizer matches ours.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Words the tokenizer learns merges from: the prompt format, tool names, JSON, anatomy.
CORPUS = (
    "You are a radiology assistant. Think, then act. <think> Let me look closer at the lesion. "
    '</think> Action: Zoom-in ```json [{"index": 0, "bbox_2d": [12, 40, 200, 256]}] ``` '
    'Action: SAM2 Action: BiomedParse {"index": 1, "captions": ["liver lesion"]} '
    "Action: Answer <answer> A hypodense lesion in the right hepatic lobe, 23 mm. </answer> "
    "The new image has index 2, width 512 and height 512. kidney spleen lung nodule bone "
    "fracture hemorrhage contrast enhancement mass cyst fluid fat air 0 1 2 3 4 5 6 7 8 9 "
)
SIZES = {
    "hidden": 64,
    "layers": 2,
    "heads": 4,
    "kv_heads": 2,
    "intermediate": 128,
    "vision_hidden": 32,
    "vision_depth": 4,
    "vision_heads": 2,
    "vision_intermediate": 64,
}


def build_tiny_vlm(out_dir: Path, seed: int = 0) -> Path:
    """Write config, random weights (safetensors), tokenizer, chat template, image processor."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # random weights large enough that logits differ clearly
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.08)
    save_tiny(model, tokenizer, out_dir, {"seed": seed, **SIZES})
    return out_dir


def tiny_tokenizer(corpus: str = CORPUS, vocab_size: int = 600):
    """Our byte-level BPE with the Qwen2 pre-tokenizer and chat template, learned from `corpus`."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(corpus, vocab_size),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=8192,
    )


def tiny_config(
    tokenizer, sizes: dict = SIZES, rope_theta: float = 1000000.0, mrope_section=(2, 3, 3)
):
    """A Qwen2.5-VL configuration of `sizes` for `tokenizer` (vocabulary padded to 64)."""
    from transformers import Qwen2_5_VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // 64) * 64  # padded, as real checkpoints are
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": sizes["hidden"],
            "num_hidden_layers": sizes["layers"],
            "num_attention_heads": sizes["heads"],
            "num_key_value_heads": sizes["kv_heads"],
            "intermediate_size": sizes["intermediate"],
            "vocab_size": vocab,
            "max_position_embeddings": 8192,  # room for a trained system prompt (ophiuchus-v1)
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": rope_theta,
                "mrope_section": list(mrope_section),
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
        },
        vision_config={
            "depth": sizes["vision_depth"],
            "hidden_size": sizes["vision_hidden"],
            "num_heads": sizes["vision_heads"],
            "intermediate_size": sizes["vision_intermediate"],
            "out_hidden_size": sizes["hidden"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1, 3],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return config


def save_tiny(model, tokenizer, out_dir: Path, record: dict, max_pixels: int = 224 * 224) -> None:
    """The checkpoint as Hugging Face writes it, with its image processor and our record."""
    from transformers import Qwen2VLImageProcessor

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    Qwen2VLImageProcessor(
        min_pixels=56 * 56,
        max_pixels=max_pixels,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    ).save_pretrained(out_dir)
    (out_dir / "edge-agent-tiny.json").write_text(json.dumps(record, indent=2))
    log.info("tiny Qwen2.5-VL written to %s", out_dir)


def _train_tokenizer(corpus: str, vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([corpus] * 4, trainer=trainer)
    return tokenizer
