"""The gateway's `Reader`, made of the agent's read: the one place the two packages meet.

The models (policy and tool models) are opened once, when the service starts, so a missing or
damaged model stops `serve` before it listens; every study is then read with them. A warm-up read
of the sample study then pays what a process's first read pays, before the first study comes."""

from __future__ import annotations

from pathlib import Path

from dicom_gateway.reader import ReadOutcome
from edge_agent.config import Config
from edge_agent.policies import make_policy
from edge_agent.read import read_study, warm_up
from tools.toolbox import default_toolbox


class AgentReader:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._toolbox = default_toolbox(config.tools)
        try:
            self._policy = make_policy(config.policy)
        except BaseException:
            self._toolbox.close()
            raise
        try:
            warm_up(config, self._toolbox)
        except BaseException:
            self.close()
            raise

    def read(self, study_dir: Path, out_dir: Path) -> ReadOutcome:
        result = read_study(
            study_dir, out_dir, self._config, policy=self._policy, toolbox=self._toolbox
        )
        return ReadOutcome(
            study_uid=result.study.uid,
            dicom=result.dicom,
            findings=len(result.report["findings"]),
            end_reason=result.trajectory.end_reason,
        )

    def close(self) -> None:
        self._policy.close()  # the model session before the tools it may still reference
        self._toolbox.close()
