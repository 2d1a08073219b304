"""Publishing a batch file where Centrapay fetches it: an S3-compatible bucket (a
pre-signed GET URL) or a folder a web server serves (an unguessable name).

A publisher names what it publishes by a *key* (the S3 object key, or the file's name
in publish_dir), which the state machine records before any byte is published; the URL is
made from it only when the create is sent (a pre-signed URL is a read key to the
records: it is never logged or recorded). ``tidy`` removes, at start, what no batch
names any more. Both stream the file (memory stays flat whatever its size) and call
``reached`` once the first chunk is on its way (the crash point in the middle).

What every publisher offers is :mod:`.interface`; the served folder's is :mod:`.folder`,
the bucket's :mod:`.s3`.
"""

from __future__ import annotations

from folderseal.providers.centrapay.config import CentrapayProviderConfig
from folderseal.providers.centrapay.publish.folder import CHUNK, FolderPublisher, suffix
from folderseal.providers.centrapay.publish.interface import Publisher, PublishError
from folderseal.providers.centrapay.publish.s3 import (
    PART,
    S3_CONCURRENCY,
    S3_CONNECTIONS,
    S3Publisher,
)

__all__ = ["CHUNK", "PART", "S3_CONCURRENCY", "S3_CONNECTIONS", "FolderPublisher",
           "PublishError", "Publisher", "S3Publisher", "make", "suffix"]


def make(cfg: CentrapayProviderConfig) -> Publisher:
    return S3Publisher(cfg) if cfg.publish == "s3" else FolderPublisher(cfg)
