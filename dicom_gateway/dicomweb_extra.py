"""DICOMweb comes with the `dicomweb` extra (`pip install 'edge-agent[dicomweb]'`): the gateway
and the CLI import its packages only where DICOMweb is configured, and say plainly when they are
missing rather than failing at the first request."""

from __future__ import annotations

import importlib

from imaging.errors import ConfigError

# import name -> PyPI name
PACKAGES = {
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "python_multipart": "python-multipart",
    "dicomweb_client": "dicomweb-client",
    "requests": "requests",
}


def require(what: str) -> None:
    """Raise ConfigError naming the extra when a package DICOMweb needs is not installed."""
    for module, package in PACKAGES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(
                f"{what} needs the {package} package: pip install 'edge-agent[dicomweb]'"
            ) from None


def web_listener(settings, spool, audit):
    """The STOW-RS endpoint when [gateway.web] port is set (None otherwise), after checking
    that everything DICOMweb needs is installed."""
    if not settings.web.port:
        return None
    require("the STOW-RS endpoint ([gateway.web] port)")
    from dicom_gateway.stow import WebListener

    return WebListener(settings.web, spool, audit)
