"""The gateway's `Reader`, made of the agent's read: the one place the two packages meet.

The models (policy and tool models) are opened once, when the service starts, so a missing or
damaged model stops `serve` before it listens; every study is then read with them. A routing rule
may name another policy than [policy] name: each one named is opened at start too. A warm-up read
of the sample study then pays what a process's first read pays, before the first study comes."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from dicom_gateway.reader import DEFAULT_REQUEST, ReadOutcome, ReadRequest
from edge_agent.config import Config
from edge_agent.policies import make_policy, policy_key
from edge_agent.read import ReadResult, read_study, warm_up
from imaging.errors import BadInput, ConfigError
from tools.toolbox import default_toolbox

log = logging.getLogger(__name__)


class AgentReader:
    def __init__(self, config: Config, policies: Iterable[str] = ()) -> None:
        self._config = config
        if config.report.pdf:
            from edge_agent.report.pdf import find_browser

            find_browser("[report] pdf = true")  # no Chromium: stop before listening
        self._toolbox = default_toolbox(config.tools)
        self._default = policy_key(config.policy.name)
        self._policies = {}
        try:
            for name in [config.policy.name, *policies]:
                if policy_key(name) not in self._policies:
                    self._policies[policy_key(name)] = make_policy(
                        replace(config.policy, name=name)
                    )
            warm_up(config, self._toolbox)
        except BaseException:
            self.close()
            raise

    def read(
        self, study_dir: Path, out_dir: Path, request: ReadRequest = DEFAULT_REQUEST
    ) -> ReadOutcome:
        name = policy_key(request.policy) if request.policy else self._default
        if name not in self._policies:  # the service opened every policy its rules name
            raise ConfigError(f"policy {request.policy!r} was not opened at start")
        result = read_study(
            study_dir,
            out_dir,
            self._config,
            question=request.question or None,
            policy=self._policies[name],
            toolbox=self._toolbox,
            replaces=Path(request.replaces) if request.replaces else None,
        )
        return ReadOutcome(
            study_uid=result.study.uid,
            dicom=(*result.dicom, *self._pdf(result)),
            findings=len(result.report["findings"]),
            end_reason=result.trajectory.end_reason,
        )

    def _pdf(self, result: ReadResult) -> tuple[Path, ...]:
        """report.pdf when the site wants it; as an Encapsulated PDF too, to send with the
        other results."""
        if not self._config.report.pdf:
            return ()
        from edge_agent.report.pdf import write_pdf

        try:
            write_pdf(result.out_dir)
        except BadInput as exc:  # the read's other results still go out
            log.warning("study %s: no report.pdf: %s", result.study.uid, exc)
            return ()
        if not (self._config.report.pdf_dicom and result.dicom):
            return ()
        from edge_agent.report.pdf_dicom import write_pdf_document

        return (write_pdf_document(result.trajectory, result.headers, result.out_dir),)

    def close(self) -> None:
        for policy in self._policies.values():  # model sessions before the tools they use
            policy.close()
        self._policies.clear()
        self._toolbox.close()
