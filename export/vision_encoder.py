"""The module torch.onnx traces for the Qwen2.5-VL vision tower: the same weights and arithmetic
as transformers, with the windowed attention as one masked attention per block.

transformers splits each window out with `torch.split(..., cu_seqlens.tolist())`, which
torch.export cannot trace (the lengths are data). Here the windows become a block-diagonal mask
built from `cu_seqlens` inside the graph, and everything transformers derives from
`image_grid_thw` in Python (rotary positions, window order, window bounds) is an input, computed
at run time by `edge_agent.vision_inputs`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

INPUTS = ("pixel_values", "position_ids", "window_index", "cu_seqlens", "cu_window_seqlens")


class VisionEncoder(torch.nn.Module):
    """pixel patches (n, 3*2*14*14) -> image embeddings (n / merge², text hidden size)."""

    def __init__(self, visual) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, pixel_values, position_ids, window_index, cu_seqlens, cu_window_seqlens):
        visual = self.visual
        hidden = visual.patch_embed(pixel_values)
        count = hidden.shape[0]
        hidden = visual.permute_input_for_window_attn(hidden, window_index, count)
        cos, sin = (
            visual.permute_input_for_window_attn(t, window_index, count)
            for t in visual.rotary_pos_emb(hidden, position_ids)
        )
        full, windows = _block_mask(cu_seqlens, count), _block_mask(cu_window_seqlens, count)
        for number, block in enumerate(visual.blocks):
            mask = full if number in visual.fullatt_block_indexes else windows
            hidden = hidden + _attention(block.attn, block.norm1(hidden), cos, sin, mask)
            hidden = hidden + block.mlp(block.norm2(hidden))
        return visual.merger(hidden)[torch.argsort(window_index)]


def _block_mask(bounds: torch.Tensor, count: int) -> torch.Tensor:
    """True where two patches lie in the same segment [bounds[i], bounds[i + 1])."""
    segment = (torch.arange(count, dtype=bounds.dtype)[:, None] >= bounds[None, 1:]).sum(1)
    return segment[:, None] == segment[None, :]


def _attention(attn, hidden, cos, sin, mask):
    count = hidden.shape[0]
    query, key, value = (
        attn.qkv(hidden).reshape(count, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    )
    query, key = apply_rotary_pos_emb_vision(query, key, cos, sin)
    heads = [t.transpose(0, 1)[None] for t in (query, key, value)]
    out = F.scaled_dot_product_attention(*heads, attn_mask=mask, scale=attn.scaling)
    return attn.proj(out[0].transpose(0, 1).reshape(count, -1))
