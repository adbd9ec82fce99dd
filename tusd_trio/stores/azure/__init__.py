"""The Azure Blob store, in tusd's azurestore layout (both daemons share a container).

Layout (``<prefix>`` is ``-azure-object-prefix`` with a ``/`` added when missing):

- ``<prefix><id>``: a block blob with the data.  Block IDs are the base64 of the
  block's index as a little-endian uint32, as in tusd.  While the upload is
  unfinished its blocks are *uncommitted*; a one-byte sentinel block (index
  2**31-1) is staged at creation so an unfinished upload always has uncommitted
  blocks.  ``finish`` commits the data blocks in index order (the sentinel is left
  out, so Azure drops it), with the configured access tier.
- ``<prefix><id>.info``: a block blob with the JSON info (tusd's FileInfo),
  ``Storage = {"Type": "azurestore", "Container": ..., "Key": ...}``.

The offset is the size of the uncommitted blocks except the sentinel, or the
size of the committed blocks once there are no uncommitted blocks (finished).

Writing streams (:mod:`.writer`): a PATCH body is cut into blocks of ``block_size``
(8 MiB by default, more for large uploads of known size, see
:meth:`AzureStore.block_size_for`) that the background uploader stages in worker
threads while the next block fills, at most ``max_blocks_in_flight`` (2) at a time.
``commit`` stages the partly filled last block, so every received byte is kept, also
after a client disconnect.  Staged writes (checksum extension) are spooled (in
memory up to 1 MiB, then in an anonymous temporary file: :mod:`tusd_trio.stores._spool`)
and become blocks only on ``commit``, through the same writer.

Memory per upload: at most ``(max_blocks_in_flight + 2) * block size`` for an
unstaged writer (the blocks in flight, the one filling and its copy while it is
handed over: 32 MiB by default; 400 MiB at the largest block size of 100 MiB,
used only for uploads of known size above 343 GiB), 1 MiB more for a staged one,
``4 * block size`` for a concatenation copied through this server and ``4 MiB``
for a download.

Limits (Azure: 50,000 committed blocks per blob, 4000 MiB per block): every
PATCH request uses at least one block, so an upload holds at most 50,000
requests' worth of data; the largest upload accepted is ``45,000 * 100 MiB``
(about 4.29 TiB; 45,000 leaves room for the partial blocks that end requests),
and uploads of deferred length reach at most ``50,000 * 8 MiB`` (390 GiB).

tusd's differences: tusd buffers each whole PATCH body in a temporary file and
stages one block per request; tusd has no concatenation on Azure (we build the
final blob from the partials' blobs, server-side with Put Block From URL when an
account key is configured, else through this server in bounded blocks).
"""

from .store import AzureStore as AzureStore

__all__ = ["AzureStore"]
