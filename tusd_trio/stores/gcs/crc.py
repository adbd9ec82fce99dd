"""CRC32C arithmetic for the GCS store: combining the checksums of concatenated
pieces without reading them again, and GCS's base64 encoding of a CRC32C.

A CRC is a remainder of polynomial division over GF(2).  Appending ``n`` bytes
to a message multiplies the register by ``x^(8n)`` modulo the polynomial, so the
CRC of ``A + B`` is ``crc(A) * x^(8*len(B)) mod P`` xor ``crc(B)`` (the pre- and
post-conditioning of CRC32C cancel out).  The powers ``x^(2^k)`` are
precomputed; a product costs at most 32 shift-and-add steps.
"""

from __future__ import annotations

import base64
import binascii

#: The Castagnoli polynomial in the bit-reflected form CRC32C uses.
_POLY = 0x82F63B78
#: In the reflected form the top bit stands for x^0.
_ONE = 1 << 31


def _multiply(a: int, b: int) -> int:
    """``a * b`` modulo the CRC32C polynomial, both in reflected form."""
    product = 0
    bit = _ONE
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _powers() -> list[int]:
    """``x^(2^k)`` modulo the polynomial for k = 0..63 (k = 3 is one byte)."""
    table = [_ONE >> 1]  # x^1
    for _ in range(63):
        table.append(_multiply(table[-1], table[-1]))
    return table


_X_POW_2K = _powers()


def _x_pow_8n(count: int) -> int:
    """``x^(8 * count)`` modulo the polynomial."""
    result = _ONE
    k = 3
    while count:
        if count & 1:
            result = _multiply(_X_POW_2K[k], result)
        count >>= 1
        k += 1
    return result


def crc32c_combine(first: int, second: int, second_length: int) -> int:
    """The CRC32C of ``A + B`` from ``crc(A)``, ``crc(B)`` and ``len(B)``."""
    if second_length == 0:
        return first
    return _multiply(_x_pow_8n(second_length), first) ^ second


def crc32c_combine_all(parts: list[tuple[int, int]]) -> int:
    """The CRC32C of the concatenation of pieces given as ``(crc, length)``."""
    total = 0
    for crc, length in parts:
        total = crc32c_combine(total, crc, length)
    return total


def decode_crc32c(value: str | None) -> int | None:
    """GCS reports a CRC32C as base64 of its 4 big-endian bytes."""
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4:
        return None
    return int.from_bytes(raw, "big")


def encode_crc32c(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")
