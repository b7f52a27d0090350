"""The images the model sees and their trained indices: the one place where a trained index (from
1 for Ophiuchus) meets our workspace index (from 0, with every original in it)."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.formats.gbnf import FormatError


@dataclass(frozen=True)
class ShownImages:
    base: int  # the trained index of the first image shown
    workspace: tuple[int, ...]  # workspace indices, in the order the model saw them

    @classmethod
    def of(cls, image_count: int, originals: int, first_turn: int, base: int) -> ShownImages:
        """The central `first_turn` originals (a volume's key slices are spread around its
        centre), then every tool output in the order it was made."""
        first = max(0, (originals - first_turn) // 2)
        picks = tuple(range(first, min(originals, first + first_turn)))
        return cls(base, picks + tuple(range(originals, image_count)))

    @property
    def trained(self) -> range:
        """The indices the model may name now."""
        return range(self.base, self.base + len(self.workspace))

    def trained_index(self, workspace_index: int) -> int:
        return self.workspace.index(workspace_index) + self.base

    def workspace_index(self, trained_index: object) -> int:
        if not isinstance(trained_index, int) or trained_index not in self.trained:
            shown = f"{self.trained.start}..{self.trained.stop - 1}"
            raise FormatError(f"image index {trained_index!r} was not shown (shown: {shown})")
        return self.workspace[trained_index - self.base]

    def since(self, first_new: int) -> tuple[int, ...]:
        """Workspace indices shown from workspace index `first_new` on."""
        return tuple(i for i in self.workspace if i >= first_new)
