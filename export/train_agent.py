"""Supervised fine-tuning of a tiny Qwen2.5-VL (our `export tiny-vlm` architecture, grown) on the
second-look task, on CPU with PyTorch, deterministic for a seed, in stages:

1. vision warm-up: the vision tower alone, with temporary heads on its merged features -- the
   stripe orientation from the Zoom-in crop (mean-pooled), which overview token holds the lesion
   (one score per token) and the lesion's grid cell (mean-pooled) -- so the image tokens carry
   what the text model must read;
2. localisation: the first turn only (the Zoom-in call and its box), the warm-up heads kept on;
3. the whole two-turn trajectory (call, then answer).

The box is taught on a coarse grid (the lesion's cell centre +- 10 shown pixels, 16 boxes), and
the text model reads the image tokens' rows and columns through M-RoPE with a low rope base (5),
so a row or column step turns the query by a sizeable angle: at Qwen's 1e6 it barely turns, and
at 10 the box was still at chance after the first-turn steps we could give it.

Every step of the schedule runs by default, so a seed and thread count give byte-identical
weights however slow the machine (the record's wall_s/cpu_s differ between runs; the weights do
not). A time box
(`Schedule.minutes`) is opt-in: a stage it cuts is named in the result and in the record, and
its weights are not the reference agent's."""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_agent.formats import load_profile
from export.look_batches import IGNORE, SPEC, Batch, collate, encode, split_prefix
from export.look_samples import PROFILE, answer_reply, render_sample, zoom_reply
from export.second_look import GRID, LETTERS, OPTIONS, QUESTION, make_box, make_case
from export.tiny_vlm import CORPUS, save_tiny, tiny_config, tiny_tokenizer

log = logging.getLogger(__name__)

SIZES = {
    "hidden": 128,
    "layers": 4,
    "heads": 4,
    "kv_heads": 2,
    "intermediate": 256,
    "vision_hidden": 64,
    "vision_depth": 4,
    "vision_heads": 2,
    "vision_intermediate": 128,
}
ROPE_THETA = 5.0
MROPE_SECTION = (2, 7, 7)  # head_dim 32: 16 frequencies; rows and columns get 7 each
VOCAB = 1024
HELD_OUT_SEED = 1  # the held-out cases' seed; training draws from `seed` (default 0)
BUDGET_MINUTES = 30.0  # what the whole schedule is meant to take on 2 CPU cores


@dataclass(frozen=True)
class Schedule:
    vision_steps: int = 40
    locate_steps: int = 300
    full_steps: int = 160
    batch: int = 8
    lr: float = 2e-3
    vision_lr: float = 3e-3
    aux_weight: float = 0.3  # the warm-up heads' loss, kept on in stages 2 and 3
    minutes: float | None = None  # opt-in time box, shared by the stages in `shares`
    shares: tuple[float, float, float] = (0.06, 0.54, 0.4)

    @property
    def steps(self) -> int:
        return self.vision_steps + self.locate_steps + self.full_steps


@dataclass(frozen=True)
class Cut:
    """A stage the time box stopped before its last step."""

    stage: str
    taken: int
    steps: int

    def line(self) -> str:
        return f"stage {self.stage} cut by the time box after {self.taken} of {self.steps} steps"


@dataclass(frozen=True)
class Trained:
    final: dict  # the learning curve's last row
    cut: tuple[Cut, ...]  # empty: every step ran, the weights are the seed's reference weights
    wall_s: float
    threads: int


def corpus() -> str:
    """What the tokenizer learns its merges from: the profile's strings and the replies."""
    profile = load_profile(PROFILE)
    texts = [CORPUS, profile.system, profile.first_turn, profile.tool_result, QUESTION]
    for row in range(GRID):
        for col in range(GRID):
            texts.append(zoom_reply(profile, 1, make_box(row, col)))
    texts += [answer_reply(profile, a, LETTERS[i]) for i, a in enumerate(OPTIONS)]
    return "\n".join(texts)


class Trainer:
    def __init__(self, seed: int = 0, threads: int = 2) -> None:
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.torch, self.seed, self.threads = torch, seed, threads
        self.tokenizer = tiny_tokenizer(corpus(), VOCAB)
        self.config = tiny_config(self.tokenizer, SIZES, ROPE_THETA, MROPE_SECTION)
        self.model = Qwen2_5_VLForConditionalGeneration(self.config)
        hidden = SIZES["hidden"]
        self.orientation_head = torch.nn.Linear(hidden, 2)
        self.lesion_head = torch.nn.Linear(hidden, 1)
        self.cell_head = torch.nn.Linear(hidden, GRID * GRID)
        self.image_token = self.config.image_token_id
        self.pad = self.tokenizer.pad_token_id
        self.profile = load_profile(PROFILE)
        from tools.toolbox import default_toolbox

        self.toolbox = default_toolbox()
        self.prefix: list[int] | None = None

    def batch(self, seed: int, start: int, size: int, first_turn_only: bool) -> Batch:
        """Cases start..start+size of `seed`, rendered by the runtime's turn writer."""
        cases = [make_case(seed, n) for n in range(start, start + size)]
        samples = [render_sample(c, self.toolbox, self.profile) for c in cases]
        if self.prefix is None:
            self.prefix, _ = split_prefix(self.tokenizer, samples[0])
        items = [encode(self.tokenizer, s, self.image_token, first_turn_only) for s in samples]
        return collate(self.prefix, items, cases, self.image_token, self.pad)

    def image_features(self, batch: Batch):
        torch = self.torch
        pixels = torch.from_numpy(batch.pixel_values)
        grids = torch.from_numpy(batch.grids)
        return self.model.model.visual(pixels, grid_thw=grids).pooler_output

    def aux_loss(self, batch: Batch, features):
        """Warm-up heads: the lesion's overview token, and (when a crop is there) orientation."""
        torch, F = self.torch, self.torch.nn.functional
        sizes = (batch.grids.prod(-1) // SPEC.merge_size**2).tolist()
        parts = torch.split(features, sizes)
        per_case = len(parts) // len(batch.answers)
        overview = torch.stack([parts[i * per_case] for i in range(len(batch.answers))])
        scores = self.lesion_head(overview).squeeze(-1)
        target = torch.from_numpy(batch.lesion_tokens)
        loss = F.cross_entropy(scores, target)
        found = (scores.argmax(-1) == target).float().mean().item()
        cells = self.cell_head(overview.mean(1))
        cell_target = torch.from_numpy(batch.cells)
        loss = loss + F.cross_entropy(cells, cell_target)
        stats = {
            "lesion_token": found,
            "cell": (cells.argmax(-1) == cell_target).float().mean().item(),
        }
        if per_case > 1:
            crops = torch.stack([parts[i * per_case + 1].mean(0) for i in range(len(parts) // 2)])
            logits = self.orientation_head(crops)
            answers = torch.from_numpy(batch.answers)
            loss = loss + F.cross_entropy(logits, answers)
            stats["orientation"] = (logits.argmax(-1) == answers).float().mean().item()
        return loss, stats

    def lm_loss(self, batch: Batch, features):
        """The replies' cross-entropy; the shared prefix runs once and its cache is repeated."""
        from transformers import DynamicCache

        torch, F = self.torch, self.torch.nn.functional
        text_model = self.model.model.language_model
        embed = text_model.embed_tokens
        prefix = torch.tensor([batch.prefix])
        cache = DynamicCache(config=self.config)
        at = torch.arange(prefix.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        text_model(inputs_embeds=embed(prefix), position_ids=at, cache=cache, use_cache=True)
        cache.batch_repeat_interleave(len(batch.ids))
        ids = torch.from_numpy(batch.ids)
        embeds = embed(ids)
        mask = (ids == self.image_token).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, features.to(embeds.dtype))
        hidden = text_model(
            inputs_embeds=embeds,
            position_ids=torch.from_numpy(batch.positions),
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        labels = torch.from_numpy(batch.labels)[:, 1:]
        trained = labels != IGNORE
        logits = self.model.lm_head(hidden[:, :-1][trained])  # only where a reply is taught
        loss = F.cross_entropy(logits, labels[trained])
        hit = torch.zeros_like(labels, dtype=torch.bool)
        hit[trained] = logits.argmax(-1) == labels[trained]
        stats = {
            "token_acc": hit.sum().item() / max(1, trained.sum().item()),
            "sample_exact": (hit | ~trained).all(-1).float().mean().item(),
        }
        return loss, stats

    def run(
        self, schedule: Schedule, log_path: Path | None = None
    ) -> tuple[list[dict], tuple[Cut, ...]]:
        """Train; returns the learning curve (one row per step) and the stages the time box cut."""
        torch = self.torch
        started, curve, cut = time.perf_counter(), [], []
        cpu_started = time.process_time()
        stages = (
            ("vision", schedule.vision_steps, False),
            ("locate", schedule.locate_steps, True),
            ("full", schedule.full_steps, False),
        )
        number, deadline = 0, started
        for (stage, steps, first_only), share in zip(stages, schedule.shares, strict=True):
            if schedule.minutes is not None:
                deadline += share * schedule.minutes * 60
            if not steps:
                continue
            heads = [
                *self.orientation_head.parameters(),
                *self.lesion_head.parameters(),
                *self.cell_head.parameters(),
            ]
            if stage == "vision":
                params = list(self.model.model.visual.parameters()) + heads
            else:
                params = list(self.model.parameters()) + heads
            lr = schedule.vision_lr if stage == "vision" else schedule.lr
            optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
            shape = functools.partial(warm_cosine, steps=steps, warm=max(1, steps // 10))
            sched = torch.optim.lr_scheduler.LambdaLR(optimiser, shape)
            for step in range(steps):
                if schedule.minutes is not None and time.perf_counter() > deadline:
                    cut.append(Cut(stage, step, steps))
                    log.warning("%s: not the reference weights", cut[-1].line())
                    break
                batch = self.batch(self.seed, number * schedule.batch, schedule.batch, first_only)
                number += 1
                features = self.image_features(batch)
                if stage == "vision":
                    loss, stats = self.aux_loss(batch, features)
                else:
                    aux, stats = self.aux_loss(batch, features)
                    lm, lm_stats = self.lm_loss(batch, features)
                    loss = lm + schedule.aux_weight * aux
                    stats.update(lm_stats, lm=lm.item())
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimiser.step()
                sched.step()
                row = {
                    "stage": stage,
                    "step": number,
                    "loss": round(loss.item(), 4),
                    "wall_s": round(time.perf_counter() - started, 1),
                    "cpu_s": round(time.process_time() - cpu_started, 1),
                    **{k: round(v, 3) for k, v in stats.items()},
                }
                curve.append(row)
                if log_path is not None:
                    with open(log_path, "a") as handle:
                        handle.write(json.dumps(row) + "\n")
        return curve, tuple(cut)

    def save(
        self, out_dir: Path, schedule: Schedule, curve: list[dict], cut: tuple[Cut, ...] = ()
    ) -> Path:
        record = {
            "task": "second-look",
            "profile": PROFILE,
            "seed": self.seed,
            "sizes": SIZES,
            "rope_theta": ROPE_THETA,
            "mrope_section": list(MROPE_SECTION),
            "schedule": asdict(schedule),
            "threads": self.threads,
            "cut": [asdict(c) for c in cut],
            "final": curve[-1] if curve else {},
        }
        # f16, as the GGUF f16 export holds it: the checkpoint is a third the size of the f32
        save_tiny(
            self.model.eval().half(), self.tokenizer, out_dir, record, max_pixels=SPEC.max_pixels
        )
        return out_dir

    def close(self) -> None:
        self.toolbox.close()


def warm_cosine(step: int, steps: int, warm: int) -> float:
    """Linear warm-up, then cosine decay to zero at `steps`."""
    return min(1.0, (step + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(step, steps) / steps))


def train_tiny_agent(out_dir: Path, schedule: Schedule, seed: int = 0, threads: int = 2) -> Trained:
    """Train and write the Hugging Face checkpoint; the learning curve is kept beside it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curve_path = out_dir / "learning-curve.jsonl"
    curve_path.unlink(missing_ok=True)
    started = time.perf_counter()
    trainer = Trainer(seed, threads)
    try:
        curve, cut = trainer.run(schedule, curve_path)
        trainer.save(out_dir, schedule, curve, cut)
    finally:
        trainer.close()
    final = curve[-1] if curve else {}
    return Trained(final, cut, round(time.perf_counter() - started, 1), threads)
