"""The `edge-agent` command (console script `edge_agent.cli:main`): the composition root, where
the agent's read and the DICOM gateway are put together. Modules: `app` (the typer app),
`terminal` (consoles, logging, exit codes), `config` (the TOML file), one module per command
group, and `gateway_reader` (the agent's read as the gateway's `Reader`)."""

from edge_agent.cli.app import app, main

__all__ = ["app", "main"]
