"""The S3 store: tusd's s3store layout, readable and writable by both daemons.

Layout (``<p>`` = the object prefix, with a trailing ``/`` when set):

* upload ID ``<objectId>+<multipartUploadId>`` (split on the last ``+``);
* ``<p><objectId>.info``: the JSON info (``Storage`` = Type, Bucket, Key);
* the S3 multipart upload of ``<p><objectId>``, holding the parts;
* ``<p><objectId>.part``: bytes that do not fill a part yet, between PATCHes;
* ``<p><objectId>``: the final object, once the multipart upload is completed.

The offset is the sum of the parts numbered 1, 2, ... without a gap (ListParts)
plus the size of ``.part``; without a multipart upload but with ``.info`` the
upload is complete.  Where to cut parts is decided by
:mod:`tusd_trio.protocol.parts`, which keeps every upload within the part limits.

Writes (:mod:`.writer`): the request body fills an in-memory part buffer; every
full part goes to the background uploader (``UploadPart`` in a worker thread)
while the body goes on.  At most ``concurrent_part_uploads`` parts of one upload
are in flight and at most ``max_buffered_parts`` parts (in flight, queued or being
filled) are held in memory; beyond that ``write`` waits (backpressure to the
client).  Memory per upload is therefore bounded by ``max_buffered_parts * part
size`` (part size: see the planner; 50 MiB by default) plus 1 MiB for staged
(checksummed) chunks, which are spooled to a temporary file until they are
verified (:mod:`tusd_trio.stores._spool`), plus the list of the upload's parts (at
most ``max_parts``, ~150 bytes each).  The store-wide hand-off tables (in
:mod:`.store`) hold at most 1024 entries each, 50,000 parts in all (~8 MiB), and
4096 IDs of complete uploads.

Requests per PATCH.  ``get`` reads ``.info``, ListParts and HEAD ``.part`` (at
once); the writer then needs the same parts list and ``.part`` size.  Instead of
asking S3 again, ``get`` leaves what it learned in a small hand-off table and
``open_writer`` takes it, once, when it is given the very ``UploadInfo`` object
that ``get`` returned, within :data:`_HANDOFF_TTL` seconds, and the offsets agree.
Likewise a writer whose commit completed the upload (every part acknowledged, no
``.part`` left) leaves the part list (with ETags) for ``finish``, which then sends
only CompleteMultipartUpload; a new upload from ``create`` is known to be empty;
an upload seen complete is remembered so ``get`` then reads only ``.info``.  A
PATCH is thus GET ``.info`` + ListParts + HEAD ``.part`` + its part uploads (+ GET
``.part`` when one must be merged, + CompleteMultipartUpload on the last one).

**Assumption** (why a hand-off is safe): the handler holds the upload's lock from
``get`` until the write is settled and ``finish`` has run, and every instance
sharing the bucket uses the same locker (e.g. Redis), so nobody else can change
the parts or ``.part`` in between.  Without a shared locker two instances writing
the same upload are unsafe anyway (parts would be overwritten).  Whenever the
hand-off does not apply (another ``UploadInfo``, too old, already taken, dropped
by a write, ``terminate``, ``finish``, ``concat`` or ``declare_length``) the store
asks S3 as before.  A completion hint whose ETags no longer match (a part
uploaded again meanwhile) is refused by S3 (InvalidPart); ``finish`` then lists
the parts and completes with those.  Remembering complete uploads needs no lock:
a multipart upload ID is never reused, so a complete upload stays complete until
it is deleted, which the GET ``.info`` that ``get`` still sends notices.
"""

from .store import S3Store as S3Store

__all__ = ["S3Store"]
