"""One model session per read, whatever runs the model: the turn loop both LLM back ends share.

Turn k adds only what is new since turn k-1 (the end of the last reply, the newest observation,
any image a tool made), checks that it fits the context with room for a whole reply, evaluates it
after the KV cache, decodes the reply token by token under the prompt format's grammar, and turns
it into a decision with its usage. A back end (llama.cpp, ONNX Runtime) supplies only what is
model-specific, through `Backend`: tokenize and evaluate a turn, pick and feed reply tokens."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge_agent.agent import Answer, Claim, Decision, PolicyError, ReadContext, ToolCall
from edge_agent.formats.chat import chat_text, question_input, turn_input
from edge_agent.formats.gbnf import FormatError, Reply
from edge_agent.formats.turns import Message, ProfileFormat
from edge_agent.usage import TurnUsage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_agent.formats.profile import Profile
    from edge_agent.trajectory import Trajectory

log = logging.getLogger(__name__)

Stream = Callable[[str], None]

# Ends the assistant's turn in the chat template; the next turn starts with it.
END_OF_REPLY = "<|im_end|>\n"
# Tokens a reply needs after its thought: a call (~60) or an answer (600 characters at most);
# a small max_new_tokens keeps half of itself for them.
AFTER_THOUGHT = 256


@dataclass(frozen=True)
class Prompt:
    """One turn's input as the back end tokenized it."""

    tokens: int  # what it adds to the KV cache: text and image tokens
    image_tokens: int
    handle: object  # the back end's own form of it (MTMD chunks; ids, embeddings, positions)


@dataclass(frozen=True)
class SessionState:
    """Where a finished read left its session, from its trajectory: what a follow-up needs."""

    cached: int  # tokens in the KV cache
    seen: int  # workspace images the model has been shown
    originals: int  # workspace images before any tool ran

    @classmethod
    def of(cls, trajectory: Trajectory) -> SessionState:
        """The last turn holds the most: every earlier prompt and reply, then its own. When it
        was a tool call, the image that tool made was never shown."""
        answers = [trajectory.answer] if trajectory.answer else []
        turns = [(s.usage, s.image) for s in trajectory.steps if s.usage] + [
            (a.usage, None) for a in (*answers, *trajectory.follow_ups) if a.usage
        ]
        originals = sum(1 for image in trajectory.images if image.step is None)
        if not turns:
            return cls(0, 0, originals)
        last, unseen = max(turns, key=lambda turn: turn[0].past)
        cached = last.past + last.prompt_tokens + last.generated
        seen = sum(1 for image in trajectory.images if image.index != unseen)
        return cls(cached, seen, originals)


class ReplyDecoder(Protocol):
    """One reply being decoded: the next token, then that token into the cache."""

    def next_token(self) -> int: ...

    def feed(self, token: int) -> None:
        """The token `next_token` picked into the cache."""

    def force(self, token: int) -> None:
        """A token the session chose (a thought's end) into the cache, the grammar following."""


class Backend(Protocol):
    """The model-specific half of a session, for one read on a loaded model."""

    marker: str  # what stands for an image in the turn text
    n_ctx: int  # tokens the KV cache holds
    constrained: bool  # replies are decoded under the format's grammar

    def prompt(self, text: str, pictures: list[np.ndarray]) -> AbstractContextManager[Prompt]:
        """The turn tokenized, its images encoded; released when the context ends."""

    def start(self, prefix: str) -> tuple[int, int]:
        """A read begins: the KV cache holds `prefix` (text only) and nothing after it. Kept
        from the last read when it began with the same prefix; (its tokens, those evaluated)."""

    def evaluate(self, prompt: Prompt) -> int:
        """Into the KV cache after what it holds; the prompt tokens the runtime evaluated."""

    def reply(self, gbnf: str | None) -> AbstractContextManager[ReplyDecoder]:
        """A decoder for one reply, under `gbnf` when given."""

    def is_end(self, token: int) -> bool: ...

    def tokenize(self, text: str) -> list[int]:
        """Reply text as the model's tokens (special tokens parsed)."""

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def close(self) -> None:
        """This read's cache goes; the model stays loaded for the next read."""


class ModelSession:
    """One read on a loaded model: its KV cache and what of the read the model has seen."""

    def __init__(self, backend: Backend, form: ProfileFormat, stream: Stream | None = None) -> None:
        """`stream` receives the reply text as it is decoded (the terminal's live view)."""
        self.backend = backend
        self.format = form
        self.stream = stream
        self.cached = 0  # tokens in the KV cache: every earlier prompt and reply
        self.seen = 0  # workspace images already in the context
        self.pending = ""  # text the next turn must start with (the end of the last reply)
        self.asked: str | None = None  # a follow-up question: the next turn's input

    @classmethod
    def resumed(
        cls, backend: Backend, form: ProfileFormat, state: SessionState, stream=None
    ) -> ModelSession:
        """A read's session again, its KV cache in the back end (kept in memory, or loaded
        from the read's saved state) as `state` says: its tokens, the workspace images shown
        and those there before any tool ran; the last reply ended."""
        session = cls(backend, replace(form, originals=state.originals), stream)
        session.cached, session.seen, session.pending = state.cached, state.seen, END_OF_REPLY
        return session

    def ask(self, question: str) -> None:
        """The next turn is `question` as a new user turn after the cache (a follow-up)."""
        self.asked = question

    @property
    def profile(self) -> Profile:
        return self.format.profile

    def step(self, context: ReadContext) -> Decision:
        started = time.perf_counter()
        text, pictures = self._turn_input(context)
        fresh = 0  # of the prefix, the tokens evaluated now (none when kept from the last read)
        if self.cached == 0:
            text, fresh = self._start(text, context.budget.max_new_tokens)
        past = self.cached - fresh
        with self.backend.prompt(text, pictures) as prompt:
            self._check_room(prompt.tokens, context.budget.max_new_tokens)
            evaluated = self.backend.evaluate(prompt) + fresh
        self.cached += prompt.tokens
        prefill_ms = _ms_since(started)
        decode_start = time.perf_counter()
        reply, generated = self._reply(context)
        self.cached += generated
        usage = TurnUsage(
            past=past,
            prompt_tokens=prompt.tokens + fresh,
            prompt_evaluated=evaluated,
            image_tokens=prompt.image_tokens,
            images=len(pictures),
            prefill_ms=prefill_ms,
            generated=generated,
            decode_ms=_ms_since(decode_start),
            prompt_profile=self.format.profile.label,
        )
        return _decision(self.format, self._parse(reply, context), context, usage)

    def _start(self, text: str, budget: int) -> tuple[str, int]:
        """The first turn's fixed head (the system prompt, the same for every read under this
        profile) is evaluated once per loaded model: the back end keeps it in the KV cache and
        each read continues after it. Returns the rest of the turn and the prefix tokens
        evaluated now."""
        prefix = chat_text(
            [Message("system", self.format.system_prompt())],
            self.profile.placeholder,
            self.backend.marker,
        )
        if not text.startswith(prefix):  # a format whose first turn has another head
            prefix = ""
        self._check_room(len(self.backend.tokenize(prefix)), budget)  # before any is evaluated
        self.cached, fresh = self.backend.start(prefix)
        return text[len(prefix) :], fresh

    def _turn_input(self, context: ReadContext) -> tuple[str, list[np.ndarray]]:
        """Only what this turn adds: the first turn shows the originals, later ones the newest
        observation and any image the tool made; a follow-up, its question."""
        if self.asked is not None:
            text = question_input(self.format, self.asked, self.backend.marker, self.pending)
            self.asked = None
            return text, []
        text, pictures = turn_input(
            self.format, context, self.seen, self.backend.marker, self.pending
        )
        self.seen = len(context.workspace)
        return text, pictures

    def _check_room(self, prompt_tokens: int, budget: int) -> None:
        """A turn that cannot fit with a whole reply ends the read now, with the numbers."""
        if self.cached + prompt_tokens + budget > self.backend.n_ctx:
            raise PolicyError(
                f"context full: {self.cached} tokens in the KV cache, this turn needs "
                f"{prompt_tokens} more plus up to {budget} for the reply, "
                f"n_ctx is {self.backend.n_ctx}"
            )

    def _reply(self, context: ReadContext) -> tuple[str, int]:
        """The reply text and its token count; the end-of-reply token is not fed to the cache,
        the next turn starts with its text instead."""
        budget = context.budget.max_new_tokens
        gbnf = self.format.grammar(len(context.workspace)) if self.backend.constrained else None
        thought = Thought(self.format, budget)
        tokens: list[int] = []
        with self.backend.reply(gbnf) as decoder:
            while len(tokens) < budget:
                if thought.over(tokens, self.backend):
                    self._force(decoder, tokens, thought.end)
                    continue
                token = decoder.next_token()
                if self.backend.is_end(token):
                    self._write("\n")
                    self.pending = END_OF_REPLY
                    return self.backend.detokenize(tokens), len(tokens)
                tokens.append(token)
                self._write(self.backend.detokenize([token]))
                decoder.feed(token)
        self._write("\n")
        raise PolicyError(  # !a: ASCII, the report's DICOM objects carry this text
            f"reply not finished within {budget} tokens{self._unconstrained()}; it began "
            f"{self.backend.detokenize(tokens)[:120]!a}"
        )

    def _force(self, decoder: ReplyDecoder, tokens: list[int], text: str) -> None:
        """End the thought now: its closing tag goes in as if the model had written it."""
        for token in self.backend.tokenize(text):
            tokens.append(token)
            decoder.force(token)
        self._write(text)

    def _parse(self, reply: str, context: ReadContext) -> Reply:
        try:
            return self.format.parse(reply, len(context.workspace))
        except FormatError as exc:
            if self.backend.constrained:  # the grammar makes this impossible: a bug
                log.error("unparseable reply despite the grammar: %s", exc)
                raise PolicyError(f"model reply did not parse (bug): {exc}") from None
            raise PolicyError(  # unconstrained: the model's mistake
                f"the model's reply does not follow the prompt format{self._unconstrained()}: {exc}"
            ) from None

    def _unconstrained(self) -> str:
        if self.backend.constrained:
            return ""
        return " (decoding is not grammar-constrained: grammar = false)"

    def _write(self, text: str) -> None:
        if self.stream:
            self.stream(text)

    def close(self) -> None:
        """The model stays loaded for the next read; the back end lets go of this read's cache."""
        self.backend.close()


class Thought:
    """A reply's thought, bounded in tokens: at the profile's `think_tokens` (or fewer, so the
    call or answer still fits `max_new_tokens`) the session writes the closing tag itself. The
    grammar's character bound stays as the back end's own limit."""

    def __init__(self, form: ProfileFormat, max_new_tokens: int) -> None:
        self.start, self.end = form.thought_start, form.thought_end
        room = min(AFTER_THOUGHT, max_new_tokens // 2)
        self.limit = min(form.thought_tokens, max_new_tokens - room)
        self.closed = False

    def over(self, tokens: Sequence[int], backend: Backend) -> bool:
        """True once, when the thought reaches its bound unclosed and may still be closed."""
        if self.closed or len(tokens) < self.limit:
            return False
        text = backend.detokenize(tokens)
        if self.start.startswith(text):  # still writing its opening tag
            return False
        self.closed = True
        # started closing itself (`</th`), or done: the grammar lets it finish
        return "<" not in text.removeprefix(self.start)


def _decision(
    form: ProfileFormat, reply: Reply, context: ReadContext, usage: TurnUsage
) -> Decision:
    """A tool call, or an answer (with the option letter it chose) citing the newest image the
    model looked at."""
    if reply.tool is None:
        text = f"{reply.answer}. {reply.option}" if reply.option else reply.answer
        evidence = (form.newest_shown(context.workspace),)
        return Answer(text, (Claim(text, evidence),), reply.thought, usage)
    return ToolCall(reply.tool, reply.arguments, reply.thought, usage)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
