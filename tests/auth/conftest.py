"""Keys for the access-control tests, generated here with cryptography."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .helpers import KeyPair, pem


@pytest.fixture(scope="session")
def rsa_key() -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(private, private.public_key(), pem(private.public_key()))


@pytest.fixture(scope="session")
def rsa_key2() -> KeyPair:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(private, private.public_key(), pem(private.public_key()))


@pytest.fixture(scope="session")
def ec_key() -> KeyPair:
    private = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(private, private.public_key(), pem(private.public_key()))
