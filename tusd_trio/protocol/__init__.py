"""The sans-IO tus protocol core: pure, synchronous, standard library only.

The Trio layer (:mod:`tusd_trio.server`) parses HTTP with h11, hands the request
to these functions and carries out what they decide, the way h11 leaves all
I/O to its caller.  Everything is imported from the module it lives in (this
package re-exports nothing):

- :mod:`.config`: ``ProtocolConfig``, ``CorsConfig``, ``StoreCapabilities``.
- :mod:`.messages`: ``Headers``, ``Request``, ``Response``.
- :mod:`.errors`: the exception tree, one class per ``ERR_*`` code.
- :mod:`.routing`: ``route`` (what a request asks for), ``Action``, ``Routed``;
  :mod:`.cors`: the origin rule.
- :mod:`.urls`: upload URLs as clients see them; :mod:`.expiration`.
- :mod:`.creation` (POST), :mod:`.writes` (PATCH), :mod:`.download` (GET),
  :mod:`.responses` (errors, OPTIONS, HEAD, DELETE, the greeting).
- :mod:`.interop` (the IETF draft's versions) and :mod:`.ietf` (its decisions).
- :mod:`.headers` (header syntax), :mod:`.info` (``UploadInfo``, the ``.info`` file),
  :mod:`.parts` (how object stores cut an upload into parts).

Rules (after h11's ``_state.py``):

1. Every decision about tus semantics (status codes, headers, offsets, lengths,
   which bytes may be accepted) is made here, never in the I/O layer.
2. Nothing here performs I/O, reads a clock or knows which store is in use: the
   caller passes the upload's stored state and the current time in.
3. Modules import only the standard library and each other, without a cycle
   (``tests/protocol/test_layering.py``).
"""
