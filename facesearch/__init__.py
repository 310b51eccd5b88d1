"""facesearch: Python SDK of the facesearch services (embedder, retriever, personalizer).

``FacesearchClient`` (sync) and ``facesearch.aio.AsyncFacesearchClient`` hold a stub per
service; the common jobs (index a folder, search by image or text, interactive sessions) are
written once as coroutines (facesearch.core) and offered to both: ``facesearch.aio`` as they
are, ``facesearch.flows`` for the sync client. ``facesearch`` on the command line is
facesearch.cli.
"""

from facesearch.client import FacesearchClient
from facesearch.errors import CollectionMismatch, FacesearchError, NoFaceFound
from facesearch.index_choice import FaceIndex
from facesearch.settings import ClientSettings

__all__ = [
    "ClientSettings",
    "CollectionMismatch",
    "FaceIndex",
    "FacesearchClient",
    "FacesearchError",
    "NoFaceFound",
]
