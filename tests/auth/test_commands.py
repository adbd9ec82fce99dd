"""The sign and hash-key subcommands."""

from __future__ import annotations

import io
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tusd_trio.auth import AuthConfig, Authenticator, main_hash_key, main_sign
from tusd_trio.auth.apikeys import ApiKeyVerifier

from .helpers import SIGNING_SECRET, write


def test_sign_prints_a_working_url(capsys: pytest.CaptureFixture[str]) -> None:
    before = time.time()
    status = main_sign(
        [
            "-auth-signing-secret",
            SIGNING_SECRET,
            "-base-url",
            "http://host:8080/files/",
            "-expires=2h",
            "-max-size",
            "4096",
            "-metadata",
            "filename=report.pdf",
            "--metadata=owner-team=a=b",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0 and err == ""
    url = out.strip()
    assert out.count("\n") == 1
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "host:8080", "/files/")
    params = dict(parse_qsl(parts.query))
    assert before + 7200 <= int(params["tus-expires"]) <= time.time() + 7201
    assert params["tus-max-size"] == "4096"
    auth = Authenticator(AuthConfig(signing_secret=SIGNING_SECRET))
    principal = auth.authenticate("POST", f"{parts.path}?{parts.query}", {}, time.time())
    assert principal is not None
    assert principal.limits["max_size"] == 4096
    assert principal.limits["metadata"] == {"filename": "report.pdf", "owner-team": "a=b"}


def test_sign_defaults_and_secret_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = write(tmp_path, "secret", SIGNING_SECRET + "\n")
    assert main_sign(["-auth-signing-secret-file", secret, "-base-url", "https://h/f/"]) == 0
    params = dict(parse_qsl(urlsplit(capsys.readouterr().out.strip()).query))
    assert abs(int(params["tus-expires"]) - (time.time() + 3600)) <= 2
    assert "tus-max-size" not in params and "tus-metadata" not in params


@pytest.mark.parametrize(
    "argv",
    [
        ["-base-url", "http://h/files/"],  # no secret
        ["-auth-signing-secret", SIGNING_SECRET],  # no base URL
        ["-auth-signing-secret", "short", "-base-url", "http://h/files/"],
        ["-auth-signing-secret", SIGNING_SECRET, "-base-url", "http://h/", "-expires", "soon"],
        ["-auth-signing-secret", SIGNING_SECRET, "-base-url", "http://h/", "-max-size", "-1"],
        ["-auth-signing-secret", SIGNING_SECRET, "-base-url", "http://h/", "-metadata", "x"],
        ["-auth-signing-secret", SIGNING_SECRET, "-base-url", "http://h/", "-bogus", "1"],
        ["-auth-signing-secret", SIGNING_SECRET, "-base-url", "http://h/", "extra"],
        ["-auth-signing-secret", SIGNING_SECRET, "-base-url"],
        ["-auth-signing-secret", SIGNING_SECRET, "-base-url", "relative/"],
    ],
)
def test_sign_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main_sign(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("tusd-trio sign: ")


def test_sign_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_sign(["-help"]) == 0
    assert "Usage: tusd-trio sign" in capsys.readouterr().err


def test_hash_key_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_hash_key(["-name", "svc", "-admin", "the-key-0123456789"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("svc:sha256:") and line.endswith(":admin")
    verifier = ApiKeyVerifier(write(tmp_path, "keys", line + "\n"))
    principal = verifier.verify("the-key-0123456789")
    assert principal.subject == "svc" and principal.admin


def test_hash_key_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("piped-key\n"))
    assert main_hash_key([]) == 0
    assert capsys.readouterr().out.strip().startswith("default:sha256:")


def test_hash_key_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_hash_key(["-generate", "-name=gen"]) == 0
    out, err = capsys.readouterr()
    key = err.strip().rsplit(" ", 1)[1]
    assert len(key) >= 40
    verifier = ApiKeyVerifier(write(tmp_path, "keys", out))
    assert verifier.verify(key).subject == "gen"


@pytest.mark.parametrize("argv", [["-name", "bad name", "k"], ["a", "b"], ["-generate", "k"]])
def test_hash_key_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main_hash_key(argv) == 2
    assert capsys.readouterr().err.startswith("tusd-trio hash-key: ")
