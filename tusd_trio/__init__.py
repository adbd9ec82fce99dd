"""tusd-trio: a Trio-based tus resumable upload server, compatible with tusd."""

from ._version import __version__ as __version__
from .config import Config as Config
from .protocol.config import ProtocolConfig as ProtocolConfig
from .protocol.info import UploadInfo as UploadInfo
from .server import Server as Server, serve as serve

__all__ = ["Config", "ProtocolConfig", "Server", "UploadInfo", "__version__", "serve"]
