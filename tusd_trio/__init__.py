"""tusd-trio: a Trio-based tus resumable upload server, compatible with tusd.

Names are imported from the module they live in: :class:`tusd_trio.config.Config`,
:func:`tusd_trio.asgi.create_app`, :class:`tusd_trio.server.Server`.  This package
imports only the version and the settings, never the server: ``python -m tusd_trio``
imports it, and the ``-workers`` parent process (which serves no request) should not
load Trio, the HTTP stacks and the stores (see :mod:`tusd_trio._workers`).
"""

from ._version import __version__ as __version__
from .config import Config as Config
from .protocol.config import ProtocolConfig as ProtocolConfig
from .protocol.info import UploadInfo as UploadInfo

__all__ = ["Config", "ProtocolConfig", "UploadInfo", "__version__"]
