"""The module torch.onnx traces: Qwen2.5-VL's language model and head, the KV cache flat."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from edge_agent.onnx_decoder import DecoderShape


class TextDecoder(torch.nn.Module):
    """The language model and its head, with the KV cache as flat tensors in and out."""

    def __init__(self, model, shape: DecoderShape) -> None:
        super().__init__()
        self.language_model = model.model.language_model
        self.lm_head = model.lm_head
        self.config = model.config
        self.layers = shape.layers

    def forward(self, input_ids, attention_mask, position_ids, past):
        cache = DynamicCache(
            ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.layers)],
            config=self.config,
        )
        out = self.language_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        )
        present = [t for layer in out.cache.layers for t in (layer.keys, layer.values)]
        return (self.lm_head(out.last_hidden_state), *present)
