"""The sans-IO tus protocol core: pure, synchronous, standard library only.

The Trio layer (:mod:`tusd_trio.server`) parses HTTP with h11, hands the request
to these functions and carries out what they decide, the way h11 leaves all
I/O to its caller.
"""

from . import errors as errors
from .core import (
    Action as Action,
    CorsConfig as CorsConfig,
    CreationPlan as CreationPlan,
    DownloadPlan as DownloadPlan,
    Headers as Headers,
    ProtocolConfig as ProtocolConfig,
    Request as Request,
    Response as Response,
    Routed as Routed,
    StoreCapabilities as StoreCapabilities,
    WritePlan as WritePlan,
)
from .info import (
    UploadInfo as UploadInfo,
    check_upload_id as check_upload_id,
    new_upload_id as new_upload_id,
)

__all__ = [
    "Action",
    "CorsConfig",
    "CreationPlan",
    "DownloadPlan",
    "Headers",
    "ProtocolConfig",
    "Request",
    "Response",
    "Routed",
    "StoreCapabilities",
    "UploadInfo",
    "WritePlan",
    "check_upload_id",
    "errors",
    "new_upload_id",
]
