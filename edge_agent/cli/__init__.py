"""The `edge-agent` command (console script `edge_agent.cli:main`): the composition root, where
the agent's read and the DICOM gateway are put together. Modules: `app` (the typer app),
`terminal` (consoles, logging, exit codes), `config` (the TOML file), one module per command
group, and `gateway_reader` (the agent's read as the gateway's `Reader`)."""

from edge_agent.cli.app import main

__all__ = ["app", "main"]


def __getattr__(name: str):
    if name == "app":  # built on demand: importing the package loads no command module
        from edge_agent.cli.app import make_app

        return make_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
