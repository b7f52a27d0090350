"""The module torch.onnx traces: Qwen2.5-VL's language model and head, the KV cache flat, and
the vision encoder's output taking the place of the <|image_pad|> tokens."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from edge_agent.onnx_decoder import DecoderShape


class TextDecoder(torch.nn.Module):
    """The language model and its head, with the KV cache as flat tensors in and out.

    `image_embeds` holds one row per <|image_pad|> token in `input_ids`, in order (no rows for a
    text-only call); the rows replace those tokens' embeddings, as transformers does."""

    def __init__(self, model, shape: DecoderShape) -> None:
        super().__init__()
        self.language_model = model.model.language_model
        self.lm_head = model.lm_head
        self.config = model.config
        self.layers = shape.layers
        self.image_token_id = model.config.image_token_id

    def forward(self, input_ids, attention_mask, position_ids, image_embeds, past):
        cache = DynamicCache(
            ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.layers)],
            config=self.config,
        )
        out = self.language_model(
            inputs_embeds=self._embed(input_ids, image_embeds),
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        )
        present = [t for layer in out.cache.layers for t in (layer.keys, layer.values)]
        return (self.lm_head(out.last_hidden_state), *present)

    def _embed(self, input_ids, image_embeds):
        """Without data-dependent shapes: the n-th image token takes row n (a cumulative count),
        a zero row keeps the gather valid when there are none."""
        embeds = self.language_model.embed_tokens(input_ids)
        is_image = input_ids == self.image_token_id
        row = (torch.cumsum(is_image.reshape(-1).to(torch.int64), 0) - 1).clamp(min=0)
        rows = torch.cat([image_embeds, image_embeds.new_zeros(1, image_embeds.shape[1])])
        picked = rows[row].reshape(embeds.shape)
        return torch.where(is_image[..., None], picked, embeds)
