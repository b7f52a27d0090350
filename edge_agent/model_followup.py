"""Follow-up questions about a model read: its session continued, not a new read.

The question is a new user turn after the read's KV cache, so only its tokens (and any image a
tool then makes) are evaluated; the model may call tools again on the read's workspace, and its
answer, steps, images and measurements join the trajectory. In the process that read the study
the cache is still in the model; another process (`edge-agent ask`) loads the state the read
saved beside its results (`read --keep-session`) and rebuilds the workspace by showing the same
frames and running the recorded tool calls again (tools are deterministic; no model runs)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from edge_agent.agent import Budget, ReadContext, StepCallback, image_record, turns
from edge_agent.policies.session import ModelSession, SessionState
from edge_agent.report.files import SESSION_DIR
from edge_agent.trajectory import FollowUpRecord, Trajectory
from imaging.atomic import write_atomic
from imaging.errors import BadInput

if TYPE_CHECKING:
    from edge_agent.config import Config
    from tools.registry import Toolbox
    from tools.workspace import Workspace

log = logging.getLogger(__name__)
C = TypeVar("C", bound="Config")


@dataclass(frozen=True)
class ShownWith:
    """The settings a read's images were chosen and sized with, what `ask` rebuilds its
    workspace with: [read] modalities, key_frames, overview_frames, shown_size, [tools]
    video_size (a cine's overview) and the model's image_size."""

    modalities: tuple[str, ...]
    key_frames: int
    overview_frames: int
    shown_size: int
    video_size: int
    image_size: int

    @classmethod
    def of(cls, config: Config, image_size: int) -> ShownWith:
        read = config.read
        return cls(
            tuple(read.modalities),
            read.key_frames,
            read.overview_frames,
            read.shown_size,
            config.tools.video_size,
            image_size,
        )

    def applied(self, config: C) -> C:
        """`config` with these settings."""
        return replace(
            config,
            read=replace(
                config.read,
                modalities=tuple(self.modalities),  # JSON gives a list back
                key_frames=self.key_frames,
                overview_frames=self.overview_frames,
                shown_size=self.shown_size,
            ),
            tools=replace(config.tools, video_size=self.video_size),
            policy=replace(
                config.policy,
                llama_cpp=replace(config.policy.llama_cpp, image_size=self.image_size),
            ),
        )


SESSION_FILE = "session.json"
STATE_FILE = "kv-seq0.bin"


class ResumablePolicy(Protocol):
    """A model policy whose last read's session can be taken up again."""

    def resume(self, context: ReadContext, state: SessionState) -> ModelSession: ...


@dataclass
class OpenRead:
    """A finished model read kept open for follow-ups: the loaded policy, whose model holds the
    read's KV cache, and the read's workspace and tools."""

    policy: ResumablePolicy
    trajectory: Trajectory
    workspace: Workspace
    toolbox: Toolbox
    budget: Budget

    def ask(self, question: str, on_step: StepCallback | None = None) -> Trajectory:
        """The model's answer to `question`, appended (with any steps and images it took)."""
        if not question.strip():
            raise BadInput("ask needs a question")
        done = self.trajectory
        last = done.follow_ups[-1].end_reason if done.follow_ups else done.end_reason
        # a reply cut off, or no room left: the cache does not end at a turn's end
        if last == "policy_error":
            raise BadInput(
                "the session ended with a policy error, so it cannot take a follow-up: "
                f"{done.follow_ups[-1].answer if done.follow_ups else done.end_detail}"
            )
        budget = replace(self.budget, max_turns=done.policy.max_turns or self.budget.max_turns)
        context = ReadContext(done.question, self.workspace, self.toolbox, budget, done.steps)
        session = self.policy.resume(context, SessionState.of(done))
        session.ask(question)
        asked_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            context, answer, (reason, detail) = turns(session, context, on_step=on_step)
        finally:
            session.close()
        taken = context.steps[len(done.steps) :]
        made_by = {s.image: s.number for s in context.steps if s.image is not None}
        images = done.images + tuple(
            image_record(image, made_by.get(image.index))
            for image in self.workspace
            if image.index >= len(done.images)
        )
        record = FollowUpRecord(
            question,
            answer.text if answer else f"No answer: {reason} ({detail})",
            answer.findings if answer else (),
            asked_at,
            steps=tuple(step.number for step in taken),
            usage=answer.usage if answer else None,
            end_reason=reason,
        )
        self.trajectory = replace(
            done, steps=context.steps, images=images, follow_ups=(*done.follow_ups, record)
        )
        return self.trajectory


@dataclass(frozen=True)
class SavedSession:
    """What `session/session.json` records: the model files the state belongs to, and how much
    it holds: the trajectory's tokens when it was saved, and the position after its last one
    (the two are checked on load, so a state and a trajectory from different saves are told
    apart instead of continued)."""

    policy: str
    model: str
    mmproj: str
    sha256: str
    state: str = STATE_FILE
    bytes: int = 0
    tokens: int = 0
    next_position: int = 0
    # the prompt profile setting the read used (a name, a file's absolute path, or "": the model
    # folder's, else the read's default); None: saved before it was recorded
    profile: str | None = None
    # the read it belongs to: its study and when it started ("": saved before they were recorded)
    study_instance_uid: str = ""
    started_at: str = ""
    # the settings its images were shown with; None: saved before they were recorded
    shown_with: ShownWith | None = None

    @classmethod
    def read(cls, result: Path) -> SavedSession:
        path = result / SESSION_DIR / SESSION_FILE
        if not path.is_file():
            raise BadInput(
                f"{result} keeps no model session: follow-ups on a model read need the read's "
                "KV cache, saved with `read --keep-session` (or ask them in `read --interactive`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            saved = cls(**data)
            if saved.shown_with is not None:
                saved = replace(saved, shown_with=ShownWith(**saved.shown_with))
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{path} is damaged: {exc}") from None
        if not {"tokens", "next_position"} <= data.keys():  # recorded since they are checked
            raise BadInput(
                f"{path} was saved by an older version of edge-agent: read the study again "
                "with --keep-session to ask follow-ups"
            )
        return saved


def save_session(policy, trajectory: Trajectory, result: Path, config: Config) -> SavedSession:
    """The KV cache that `trajectory` ends with, the model files it belongs to and the settings
    (`config`, the read's) its images were shown with, into RESULT/session/: the state, then
    session.json, each whole or not at all. Saved before the trajectory is written, a crash
    between leaves a session that load refuses by its count."""
    folder = result / SESSION_DIR
    state = policy.save_session(folder / STATE_FILE)
    settings = policy.settings
    saved = SavedSession(
        policy=trajectory.policy.name,
        model=str(Path(settings.model).resolve()),
        mmproj=str(Path(settings.mmproj).resolve()),
        sha256=trajectory.policy.model["sha256"],
        bytes=state.bytes,
        tokens=SessionState.of(trajectory).cached,
        next_position=state.next_position,
        profile=profile_setting(settings.profile),
        study_instance_uid=trajectory.study_instance_uid,
        started_at=trajectory.started_at,
        shown_with=ShownWith.of(config, settings.image_size),
    )
    write_atomic(folder / SESSION_FILE, json.dumps(asdict(saved), indent=2).encode())
    log.info("study %s: session saved (%d bytes)", trajectory.study_instance_uid, state.bytes)
    return saved


def profile_setting(profile: str) -> str:
    """A profile setting that still names the same profile from another working folder."""
    return str(Path(profile).resolve()) if profile and Path(profile).is_file() else profile


def read_profile(saved: SavedSession, trajectory: Trajectory) -> str:
    """The profile setting the read used: as its session recorded it, else (an older session)
    the shipped profile its trajectory names, else the model folder's or the default."""
    from edge_agent.formats.profile import available, profile_name

    if saved.profile is not None:
        return saved.profile
    name = profile_name(trajectory.policy.prompt_profile)
    return name if name in available() else ""


def as_read(config: C, saved: SavedSession) -> C:
    """`config` with the settings the read's images were shown with, as its session records."""
    if saved.shown_with is None:  # an older session: its rebuilt images are checked instead
        return config
    return saved.shown_with.applied(config)


def reopen(result: Path, trajectory: Trajectory, config: C, stream=None) -> tuple[OpenRead, C]:
    """A model read in RESULT (`trajectory`: its trajectory.json, loaded) opened again in this
    process: its model loaded, the saved KV cache loaded into it, its workspace rebuilt with the
    settings the read used; returned with `config` holding those settings. The caller closes
    `.policy` and `.toolbox`."""
    from edge_agent.policies import make_policy
    from tools.toolbox import default_toolbox

    if trajectory.policy.name != "llama_cpp":
        raise BadInput(
            f"a {trajectory.policy.label} read keeps its session only in the process that read "
            "it: ask follow-ups in `read --interactive`"
        )
    saved = SavedSession.read(result)
    read = (trajectory.study_instance_uid, trajectory.started_at)
    if saved.started_at and (saved.study_instance_uid, saved.started_at) != read:
        raise BadInput(
            f"{result}/{SESSION_DIR} belongs to another read (study {saved.study_instance_uid} "
            f"started at {saved.started_at}) than trajectory.json's (study {read[0]} started "
            f"at {read[1]}): read the study again with --keep-session to ask follow-ups"
        )
    if saved.sha256 != (trajectory.policy.model or {}).get("sha256"):
        raise BadInput(f"{result}/{SESSION_DIR} was saved for another model than the read's")
    cached = SessionState.of(trajectory).cached
    if saved.tokens != cached:
        raise BadInput(
            f"{result}/{SESSION_DIR} holds a KV cache of {saved.tokens} tokens, but "
            f"trajectory.json ends after {cached}: the two were not saved together"
        )
    config = as_read(config, saved)
    # the read's model and prompt profile, whatever this configuration names
    llm = replace(
        config.policy.llama_cpp,
        model=saved.model,
        mmproj=saved.mmproj,
        profile=read_profile(saved, trajectory),
    )
    policy = make_policy(replace(config.policy, name="llama_cpp", llama_cpp=llm), stream=stream)
    toolbox = None
    try:
        if policy.record.model["sha256"] != saved.sha256:
            raise BadInput(
                f"{saved.model} has changed since the read (SHA-256 differs): its saved session "
                "belongs to the model that made the read"
            )
        state = result / SESSION_DIR / saved.state
        loaded = policy.load_session(state)
        if loaded != saved.next_position:
            raise BadInput(
                f"{state} ends at KV position {loaded}, not the {saved.next_position} "
                f"{SESSION_FILE} records: the state file is not the one saved with it"
            )
        toolbox = default_toolbox(config.tools)
        workspace = rebuilt_workspace(trajectory, policy, toolbox, config)
    except BaseException:
        if toolbox is not None:
            toolbox.close()
        policy.close()
        raise
    return OpenRead(policy, trajectory, workspace, toolbox, config.budget), config


def rebuilt_workspace(trajectory: Trajectory, policy, toolbox: Toolbox, config: Config):
    """The read's workspace again: the study loaded, the same frames shown, each recorded tool
    call that made an image run again; any difference from the record is refused."""
    from edge_agent.read import shown_workspace
    from edge_agent.selection import select
    from imaging.study import load_study

    if not trajectory.source_path or not Path(trajectory.source_path).exists():
        raise BadInput(f"the read's study {trajectory.source_path!r} is not there any more")
    study = load_study(Path(trajectory.source_path))
    selection = select(study, config.read.modalities, config.read.key_frames)
    workspace = shown_workspace(selection, policy, config)
    check_originals(trajectory, workspace)
    for step in trajectory.steps:
        if step.image is None:
            continue
        made = toolbox.call(step.tool, step.arguments, workspace).image
        record = trajectory.image(step.image)
        if made is None or (made.index, made.size) != (step.image, (record.width, record.height)):
            raise BadInput(f"step {step.number} ({step.tool}) does not make the same image again")
    return workspace


def check_originals(trajectory: Trajectory, workspace: Workspace) -> None:
    """The images shown at the start of the read, rebuilt, are the ones its record names: the
    same frame of the same instance (a contact sheet: the same frames), at the same size."""
    originals = [record for record in trajectory.images if record.step is None]
    if len(workspace) != len(originals):
        raise BadInput(
            f"the read was shown {len(originals)} image(s) at its start, but the study and "
            f"these settings show {len(workspace)}: not the read's images"
        )
    for record, image in zip(originals, workspace, strict=True):
        again = image_record(image, None)
        said = {
            "SOP Instance UID": (record.source.sop_instance_uid, again.source.sop_instance_uid),
            "frame": (record.source.frame, again.source.frame),
            "contact sheet frames": (record.frames, again.frames),
            "size": ((record.width, record.height), (again.width, again.height)),
        }
        differ = [f"{name} {was} is now {now}" for name, (was, now) in said.items() if was != now]
        if differ:
            raise BadInput(
                f"image {record.index} of the read ({record.file}) is not rebuilt as it was "
                f"shown: {'; '.join(differ)}"
            )
