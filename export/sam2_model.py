"""SAM2 in PyTorch, built from the `sam2` package's configs and cut where the segment tool cuts it.

`ImageEncoder` is what `SAM2ImagePredictor.set_image` keeps for an image; `BoxDecoder` is its
`predict` for box prompts with one mask each, for any number of boxes at once. The exporter and
the verification both use these two modules, so they cannot drift apart."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch
from torch import nn

from export.gguf import ExportError

log = logging.getLogger(__name__)


def build_sam2_model(config: str, checkpoint: Path | None, overrides: tuple[str, ...] = ()):
    """SAM2Base in eval mode on CPU, from the package's config and (optionally) a checkpoint."""
    name = config_path(config)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from sam2.build_sam import build_sam2

    try:
        model = build_sam2(name, None, device="cpu", hydra_overrides_extra=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ExportError(f"cannot build SAM2 from {name} with {list(overrides)}: {exc}") from None
    if checkpoint is None:
        log.warning("no checkpoint: SAM2 %s has random weights (for tests and benchmarks)", name)
        return model.eval()
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
        model.load_state_dict(state)
    except FileNotFoundError:
        raise ExportError(f"checkpoint {checkpoint} does not exist") from None
    except (RuntimeError, KeyError, TypeError, EOFError) as exc:
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ExportError(f"{checkpoint} is not a SAM2 checkpoint for {name}: {detail}") from None
    return model.eval()


def config_path(config: str) -> str:
    """A config the sam2 package ships, as hydra names it; an unknown one lists the known ones."""
    root = _sam2_root()
    yamls = (root / "configs").rglob("*.yaml")
    known = {p.name.removesuffix(".yaml"): p.relative_to(root).as_posix() for p in yamls}
    wanted = config.removesuffix(".yaml")  # "sam2.1_hiera_t", "sam2.1/sam2.1_hiera_t", a path
    stem = wanted.split("/")[-1]
    if stem not in known or not known[stem].removesuffix(".yaml").endswith(wanted):
        names = ", ".join(sorted(known))
        raise ExportError(f"unknown SAM2 config {config!r}; the sam2 package has: {names}")
    return known[stem]


def _sam2_root() -> Path:
    """The installed sam2 package (its import sets up hydra's config search path)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import sam2
    except ImportError:
        raise ExportError(
            "the sam2 package is not installed: pip install --no-deps sam2==1.1.0 && pip install "
            "hydra-core iopath (sam2 declares torchvision, which building and exporting never use)"
        ) from None
    return Path(sam2.__file__).parent


class ImageEncoder(nn.Module):
    """Image → (image_embed, high_res_0, high_res_1), as SAM2ImagePredictor.set_image keeps them."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.side = int(model.image_size)
        self.eval()

    def forward(self, image):
        backbone = self.model.forward_image(image)
        _, features, _, sizes = self.model._prepare_backbone_features(backbone)
        if self.model.directly_add_no_mem_embed:  # an image is a video's first frame, no memory
            features[-1] = features[-1] + self.model.no_mem_embed
        maps = [
            f.permute(1, 2, 0).reshape(1, -1, h, w)
            for f, (h, w) in zip(features, sizes, strict=True)
        ]
        return maps[2], maps[0], maps[1]


class BoxDecoder(nn.Module):
    """(embeddings, boxes (n, 4) in input pixels) → one mask's logits and score per box."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image_embed, high_res_0, high_res_1, boxes):
        corners = boxes.reshape(-1, 2, 2)  # a box is two points labelled 2 and 3, as in SAM2
        labels = torch.tensor([[2, 3]], dtype=torch.int32).expand(corners.shape[0], 2)
        sparse, dense = self.model.sam_prompt_encoder(
            points=(corners, labels), boxes=None, masks=None
        )
        logits, scores, _, _ = self.model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
            repeat_image=True,  # one image, n boxes
            high_res_features=[high_res_0, high_res_1],
        )
        return logits, scores
