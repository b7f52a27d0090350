"""dcmtk `storescp` as a destination: the files it received, and its options (`+xi`: it accepts
Implicit VR Little Endian only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.peers import echo, free_port, tool, wait_for


class StoreScp:
    """One `storescp` on a free loopback port, writing what it receives into `folder`."""

    def __init__(self, folder: Path, *options: str, aet: str = "DEST") -> None:
        self.folder = folder
        self.aet = aet
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self._log = open(folder.parent / f"{folder.name}.log", "wb")  # noqa: SIM115 - in stop()
        self._process = subprocess.Popen(
            [tool("storescp", "dcmtk"), *options, "-aet", aet, "-od", str(folder), str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: echo(self.port, aet, "ECHOSCU") == 0, 30, "storescp to answer C-ECHO")

    @property
    def node(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.port}"

    def received(self) -> list[Path]:
        return sorted(self.folder.iterdir())

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)
        self._log.close()
