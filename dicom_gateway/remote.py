"""A remote archive named on the command line: AE@HOST:PORT (DIMSE) or dicomweb+https://…
(DICOMweb), and the find / get that each one speaks. The one place the scheme picks the
protocol for query/retrieve."""

from __future__ import annotations

from pathlib import Path

from dicom_gateway import retrieve
from dicom_gateway.dicomweb_extra import require
from dicom_gateway.retrieve import FoundStudy
from dicom_gateway.settings import Peer, destination
from dicom_gateway.web_settings import WebPeer, WebServer, WebSettings

Node = Peer | WebServer


def node(text: str, web: WebSettings) -> Node:
    """A DIMSE peer, or a DICOMweb server with the token and CA [gateway.web] gives its URL."""
    found = destination(text)
    if not isinstance(found, WebPeer):
        return found
    require(f"--pacs {text}")
    return web.server(found)


def find_studies(calling_ae: str, remote: Node, **filters: str) -> list[FoundStudy]:
    if isinstance(remote, WebServer):
        from dicom_gateway import dicomweb_retrieve  # the dicomweb extra, checked by node()

        return dicomweb_retrieve.find_studies(remote, **filters)
    return retrieve.find_studies(calling_ae, remote, **filters)


def get_study(calling_ae: str, remote: Node, study_uid: str, folder: Path) -> int:
    if isinstance(remote, WebServer):
        from dicom_gateway import dicomweb_retrieve

        return dicomweb_retrieve.get_study(remote, study_uid, folder)
    return retrieve.get_study(calling_ae, remote, study_uid, folder)
