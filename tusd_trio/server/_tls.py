"""TLS for the native server: the ``ssl.SSLContext`` of ``-tls-mode`` and listener wrapping.

Modes (as tusd's ``-tls-mode``):

``tls12`` (default)
    TLS 1.2 and 1.3.  For TLS 1.2 only ECDHE key exchange with AEAD ciphers
    (AES-GCM, ChaCha20-Poly1305); TLS 1.3 uses OpenSSL's (all AEAD) suites.
``tls12-strong``
    Exactly TLS 1.2, ECDHE with AES-256-GCM only.
``tls13``
    TLS 1.3 only.

HTTPS is on only when both a certificate and a key are configured.  ALPN offers
``h2`` (when HTTP/2 is available) before ``http/1.1``.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import TypeVar

import trio

from ..config import TLS_MODES, Config, ConfigError

_TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
_TLS12_STRONG_CIPHERS = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"


class TLSConfigError(ConfigError):
    """A TLS setting that cannot work; its message is one line for the operator."""


def h2_available() -> bool:
    """Whether the ``h2`` package (needed for HTTP/2) is installed."""
    try:
        import h2.connection  # noqa: F401
    except ImportError:
        return False
    return True


def create_ssl_context(
    certificate: str,
    key: str,
    mode: str = "tls12",
    *,
    alpn: Sequence[str] | None = None,
) -> ssl.SSLContext:
    """A server context for ``-tls-certificate``/``-tls-key`` in ``-tls-mode``.

    ``alpn`` defaults to ``["h2", "http/1.1"]`` when HTTP/2 can be served, else
    ``["http/1.1"]``.  Raises :class:`TLSConfigError` with a one-line message for
    an unknown mode or a certificate/key that cannot be loaded.
    """
    if mode not in TLS_MODES:
        raise TLSConfigError(
            f"invalid -tls-mode {mode!r}: use tls13, tls12 (default) or tls12-strong"
        )
    if not certificate or not key:
        raise TLSConfigError("TLS needs both -tls-certificate and -tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    if mode == "tls13":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    elif mode == "tls12":
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
        context.set_ciphers(_TLS12_CIPHERS)
    else:  # tls12-strong
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(_TLS12_STRONG_CIPHERS)
    try:
        context.load_cert_chain(certificate, key)
    except FileNotFoundError as exc:
        raise TLSConfigError(
            f"cannot load TLS certificate/key: {exc.filename or certificate}: no such file"
        ) from None
    except PermissionError as exc:
        raise TLSConfigError(
            f"cannot load TLS certificate/key: {exc.filename or certificate}: permission denied"
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise TLSConfigError(
            f"cannot load TLS certificate {certificate!r} with key {key!r}: {reason} "
            "(PEM certificate chain and matching unencrypted PEM key expected)"
        ) from None
    except OSError as exc:
        raise TLSConfigError(
            f"cannot load TLS certificate/key: {exc.strerror or exc}".replace("\n", " ")
        ) from None
    if alpn is None:
        alpn = ["h2", "http/1.1"] if h2_available() else ["http/1.1"]
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def context_from_config(config: Config, *, alpn: Sequence[str] | None = None) -> ssl.SSLContext:
    """:func:`create_ssl_context` for the -tls-* flags."""
    return create_ssl_context(config.tls_certificate, config.tls_key, config.tls_mode, alpn=alpn)


_S = TypeVar("_S", bound=trio.abc.Stream)


def wrap_listeners(
    listeners: Sequence[trio.abc.Listener[_S]], context: ssl.SSLContext
) -> list[trio.SSLListener[_S]]:
    """Wrap plain listeners so each accepted connection is a :class:`trio.SSLStream`.

    ``https_compatible=True``: clients that close without a TLS close_notify (most
    HTTPS clients) are not treated as a broken connection.  The handshake itself
    happens on the first read or write, in the connection's own task.
    """
    return [trio.SSLListener(listener, context, https_compatible=True) for listener in listeners]


def wrap_stream(stream: _S, context: ssl.SSLContext) -> trio.SSLStream[_S]:
    """One accepted connection as a server-side TLS stream (handshake on first use)."""
    return trio.SSLStream(stream, context, server_side=True, https_compatible=True)


async def handshake(stream: trio.SSLStream[_S], limit: float) -> str | None:
    """Complete the TLS handshake within ``limit`` seconds; the ALPN protocol chosen.

    Raises :class:`trio.BrokenResourceError` when the handshake fails or is too slow.
    """
    with trio.move_on_after(limit) as scope:
        await stream.do_handshake()
    if scope.cancelled_caught:
        raise trio.BrokenResourceError("TLS handshake timed out")
    selected: str | None = stream.selected_alpn_protocol()
    return selected
