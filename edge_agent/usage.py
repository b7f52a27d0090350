"""What one model turn cost: the tokens it added to the context and the time it took.

The trajectory stores one per step of a model policy (JSON keys are the field names); a policy
without a model (protocol) has none. Every field has a default so that a trajectory written before
a field existed still loads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class TurnUsage:
    past: int = 0  # tokens already in the KV cache: earlier turns, not evaluated again
    prompt_tokens: int = 0  # what this turn added: text and image tokens
    prompt_evaluated: int = 0  # prompt tokens the runtime evaluated (== prompt_tokens: no re-reads)
    image_tokens: int = 0  # of prompt_tokens, those of the new images
    images: int = 0  # images this turn showed the model
    prefill_ms: float = 0.0  # building, encoding and evaluating the turn's input
    generated: int = 0  # reply tokens, the end-of-reply token not counted
    decode_ms: float = 0.0
    prompt_profile: str = ""  # the profile the turn was rendered with (says if provisional)

    def __post_init__(self) -> None:
        counts = (self.past, self.prompt_tokens, self.prompt_evaluated, self.image_tokens)
        if min(*counts, self.images, self.generated) < 0:
            raise ValueError(f"token and image counts cannot be negative: {self}")
        if self.image_tokens > self.prompt_tokens:
            raise ValueError(
                f"image_tokens {self.image_tokens} exceed prompt_tokens {self.prompt_tokens}"
            )
