"""The Google Cloud Storage store, in tusd's gcsstore layout (a bucket filled by
tusd is served by us and the other way round).

Objects, with ``<key>`` = ``<prefix>/<id>``:

- ``<key>.info``: the JSON info, with tusd's field names and
  ``Storage {"Type": "gcsstore", "Bucket": ..., "Key": <key>}``.
- ``<key>_<n>``: one chunk object per PATCH, n = highest existing index + 1.
  The offset is the sum of the chunk sizes.
- ``<key>``: the finished object.  ``finish`` composes the chunks into it (32
  sources per compose, deeper levels through ``<key>_tmp_<level>_<index>``),
  checks its CRC32C against the CRC32C combined from the sources, deletes the
  chunks and sets the upload metadata as object metadata.  Once it exists the
  offset is its size.
- ``<prefix>/.tusd-trio-staging/<id>.stage-<hex>``: a staged (checksum) chunk,
  outside ``<key>``'s names so neither tusd nor we count it; on commit it is
  copied to ``<key>_<n>`` and deleted, on discard deleted.

Beyond tusd: deferred length (``declare_length`` rewrites the ``.info``),
concatenation (compose of the partials' objects), checksum (staged chunks) and
GET of an unfinished upload (the chunks, read in order).

Memory: a PATCH body streams into its chunk object through a resumable upload
in pieces of ``piece_size`` (4 MiB): one piece in flight in a worker thread while
the next fills, so at most ``2 * piece_size + 256 KiB`` plus one body chunk per
writer.  A GET holds at most two 2 MiB pieces (one being yielded, one being
fetched).  Nothing is buffered on disk.
"""

from .store import GCSStore as GCSStore

__all__ = ["GCSStore"]
