"""The tusd-style flag parser: syntax, value types, errors, -help, build_config."""

from __future__ import annotations

import re

import pytest

from tusd_trio._values import parse_duration
from tusd_trio._version import __version__
from tusd_trio.cli.build import build_config
from tusd_trio.cli.flags import FLAGS, UsageError, parse_args, usage
from tusd_trio.cli.main import main
from tusd_trio.config import Config
from tusd_trio.protocol.config import (
    DEFAULT_CORS_ALLOW_HEADERS,
    DEFAULT_CORS_ALLOW_METHODS,
    DEFAULT_CORS_EXPOSE_HEADERS,
)
from tusd_trio.protocol.headers import CHECKSUM_ALGORITHMS

# --- syntax ----------------------------------------------------------------------


def test_defaults_without_flags() -> None:
    values = parse_args([])
    assert values == {flag.name: flag.default for flag in FLAGS}


@pytest.mark.parametrize(
    "argv",
    [
        ["-max-size=1000"],
        ["-max-size", "1000"],
        ["--max-size=1000"],
        ["--max-size", "1000"],
    ],
)
def test_value_syntaxes(argv: list[str]) -> None:
    assert parse_args(argv)["max-size"] == 1000


def test_value_may_contain_equals_and_start_with_a_dash() -> None:
    values = parse_args(["-cors-allow-origin=a=b", "-base-path", "-odd-"])
    assert values["cors-allow-origin"] == "a=b"
    assert values["base-path"] == "-odd-"


def test_empty_value_with_equals() -> None:
    assert parse_args(["-unix-sock="])["unix-sock"] == ""


def test_last_occurrence_wins() -> None:
    assert parse_args(["-port=1", "-port=2"])["port"] == "2"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-disable-download"], True),
        (["--disable-download"], True),
        (["-disable-download=true"], True),
        (["-disable-download=1"], True),
        (["-disable-download=T"], True),
        (["-disable-download=false"], False),
        (["-disable-download=0"], False),
        (["-disable-download=F"], False),
    ],
)
def test_booleans(argv: list[str], expected: bool) -> None:
    assert parse_args(argv)["disable-download"] is expected


def test_true_by_default_booleans_are_turned_off_with_equals_false() -> None:
    values = parse_args(["-verbose=false", "-show-greeting=false", "-show-startup-logs=false"])
    assert values["verbose"] is False
    assert values["show-greeting"] is False
    assert values["show-startup-logs"] is False


def test_boolean_does_not_consume_the_next_argument() -> None:
    # Go's flag package: `-verbose false` is `-verbose` plus a stray argument.
    with pytest.raises(UsageError, match="unexpected argument 'false'"):
        parse_args(["-verbose", "false"])


# --- value types -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("5s", 5.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("250us", 250e-6),
        ("250µs", 250e-6),
        ("10ns", 10e-9),
        ("2h45m30.5s", 2 * 3600 + 45 * 60 + 30.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse_args([f"-network-timeout={text}"])["network-timeout"] == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2", "", "1x", "s", "1h30", "h1", "1 h", "-", "1m-2s"])
def test_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bare_number_duration_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="-shutdown-timeout"):
        parse_args(["-shutdown-timeout=2"])


@pytest.mark.parametrize(
    ("text", "perms"),
    [("0775", 0o775), ("775", 0o775), ("0600", 0o600), ("0", 0), ("7777", 0o7777)],
)
def test_octal_permissions(text: str, perms: int) -> None:
    assert parse_args([f"-dir-perms={text}"])["dir-perms"] == perms
    assert parse_args(["-file-perms", text])["file-perms"] == perms


@pytest.mark.parametrize("text", ["0o775", "0778", "abc", "", "-1", "077777"])
def test_invalid_octal_permissions(text: str) -> None:
    with pytest.raises(UsageError, match="-file-perms"):
        parse_args([f"-file-perms={text}"])


@pytest.mark.parametrize("text", ["-1", "1.5", "1e3", "abc", ""])
def test_invalid_integers(text: str) -> None:
    with pytest.raises(UsageError, match="-max-size"):
        parse_args([f"-max-size={text}"])


# --- errors through main() --------------------------------------------------------------


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    return captured.err.splitlines()[0]


@pytest.mark.parametrize(
    ("argv", "flag", "wording"),
    [
        (["-no-such-flag"], "-no-such-flag", "not defined"),
        (["--no-such-flag=1"], "-no-such-flag", "not defined"),
        (["-max-size"], "-max-size", "needs an argument"),
        (["-port=1", "-upload-dir"], "-upload-dir", "needs an argument"),
        (["-max-size=lots"], "-max-size", "invalid value"),
        (["-verbose=maybe"], "-verbose", "invalid value"),
        (["-network-timeout=2"], "-network-timeout", "invalid value"),
        (["-dir-perms=999"], "-dir-perms", "invalid value"),
        (["-port=http"], "-port", "invalid value"),
        (["-port=70000"], "-port", "invalid value"),
        (["-log-format=xml"], "-log-format", "invalid value"),
        (["-locker=zookeeper"], "-locker", "invalid value"),
        (["-cors-allow-origin=("], "-cors-allow-origin", "invalid value"),
        (["-checksum-algorithms=sha1,crc32"], "-checksum-algorithms", "invalid value"),
        (["-base-path=files/"], "-base-path", "invalid value"),
        (["-network-timeout=0s"], "-network-timeout", "invalid value"),
    ],
)
def test_usage_errors_exit_2_with_a_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str, wording: str
) -> None:
    assert main(argv) == 2
    line = error_line(capsys)
    assert line.startswith("tusd-trio: ")
    assert re.search(re.escape(flag) + r"(?![\w-])", line), line
    assert wording in line


def test_stray_positional_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert "'serve'" in error_line(capsys)


@pytest.mark.parametrize("argv", [["-"], ["--"]])
def test_lone_dashes_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    error_line(capsys)


# --- -help, -version ----------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-help", "--help", "-h"])
def test_help_lists_every_flag_with_its_default(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    assert main([flag]) == 0
    out = capsys.readouterr().out
    assert out == usage()
    lines = out.splitlines()
    for item in FLAGS:
        [index] = [
            i
            for i, line in enumerate(lines)
            if re.fullmatch(rf"  -{re.escape(item.name)}( \w+)?", line)
        ]
        assert f"(default {item.default_text()})" in lines[index + 1], item.name


def test_help_shows_defaults_in_go_syntax() -> None:
    text = usage()
    assert "(default 5s)" in text  # filelock-holder-poll-interval
    assert "(default 1m0s)" in text  # network-timeout
    assert "(default 0775)" in text and "(default 0664)" in text
    assert "(default true)" in text and "(default false)" in text
    assert '(default "")' in text
    assert "(default 0s)" in text  # expiration


def test_help_wins_even_after_other_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-port=1", "-help"]) == 0
    assert "Usage: tusd-trio" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["-version"], ["--version"], ["-version=true", "-port=1"]])
def test_version(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out == f"tusd-trio {__version__}\n"


def test_version_false_does_not_print_version(capsys: pytest.CaptureFixture[str]) -> None:
    # Falls through to config validation, which fails here on purpose.
    assert main(["-version=false", "-log-format=xml"]) == 2
    assert __version__ not in capsys.readouterr().out


# --- build_config -------------------------------------------------------------------


def config_for(*argv: str) -> Config:
    return build_config(parse_args(list(argv)))


def test_build_config_defaults() -> None:
    config = config_for()
    protocol = config.protocol
    assert (config.host, config.port, config.unix_sock) == ("127.0.0.1", 8080, "")
    assert protocol.base_path == "/files/"
    assert protocol.max_size == 0
    assert protocol.checksum_algorithms == tuple(CHECKSUM_ALGORITHMS)
    assert protocol.cors is not None
    assert protocol.cors.allow_origin == ".*"
    assert protocol.cors.allow_methods == DEFAULT_CORS_ALLOW_METHODS
    assert protocol.cors.allow_headers == DEFAULT_CORS_ALLOW_HEADERS
    assert protocol.cors.expose_headers == DEFAULT_CORS_EXPOSE_HEADERS
    assert protocol.cors.max_age == "86400"
    assert (config.dir_perms, config.file_perms) == (0o775, 0o664)
    assert config.upload_dir == "./data"
    assert config.locker == "file"
    assert config.acquire_lock_timeout == 20.0
    assert config.filelock_holder_poll_interval == 5.0
    assert config.filelock_acquirer_poll_interval == 2.0
    assert config.network_timeout == 60.0
    assert config.idle_timeout == 60.0  # 0 means: the network timeout
    assert config.shutdown_timeout == 10.0
    assert config.request_completion_timeout == 10.0
    assert (config.verbose, config.show_startup_logs, config.log_format) == (True, True, "text")


def test_build_config_maps_flags_to_fields() -> None:
    config = config_for(
        "-host=0.0.0.0",
        "-port=0",
        "-unix-sock=/tmp/t.sock",
        "-base-path=/up/",
        "-max-size=1048576",
        "-behind-proxy",
        "-relative-location",
        "-max-connections=50",
        "-max-header-size=8192",
        "-disable-download",
        "-disable-termination",
        "-disable-concatenation",
        "-expiration=24h",
        "-expiration-interval=1m",
        "-show-greeting=false",
        "-upload-dir=/srv/uploads",
        "-dir-perms=0750",
        "-file-perms=0640",
        "-fsync",
        "-locker=memory",
        "-filelock-holder-poll-interval=1s",
        "-filelock-acquirer-poll-interval=250ms",
        "-network-timeout=30s",
        "-idle-timeout=5s",
        "-shutdown-timeout=0",
        "-acquire-lock-timeout=3s",
        "-request-completion-timeout=7s",
        "-log-format=json",
        "-verbose=false",
        "-show-startup-logs=false",
    )
    protocol = config.protocol
    assert (config.host, config.port, config.unix_sock) == ("0.0.0.0", 0, "/tmp/t.sock")
    assert protocol.base_path == "/up/"
    assert protocol.max_size == 1048576
    assert protocol.behind_proxy and protocol.relative_location
    assert protocol.disable_download and protocol.disable_termination
    assert protocol.disable_concatenation
    assert protocol.expiration == 86400.0
    assert protocol.show_greeting is False
    assert (config.max_connections, config.max_header_size) == (50, 8192)
    assert config.expiration_interval == 60.0
    assert config.upload_dir == "/srv/uploads"
    assert (config.dir_perms, config.file_perms) == (0o750, 0o640)
    assert config.fsync is True
    assert config.locker == "memory"
    assert config.filelock_holder_poll_interval == 1.0
    assert config.filelock_acquirer_poll_interval == 0.25
    assert (config.network_timeout, config.idle_timeout) == (30.0, 5.0)
    assert config.shutdown_timeout == 0.0
    assert config.acquire_lock_timeout == 3.0
    assert config.request_completion_timeout == 7.0
    assert (config.log_format, config.verbose, config.show_startup_logs) == ("json", False, False)


def test_cors_lists_are_appended_to_the_defaults() -> None:
    config = config_for(
        "-cors-allow-methods=PUT",
        "-cors-allow-headers=X-Custom",
        "-cors-expose-headers=X-Out, X-Other",
        "-cors-allow-origin=^https://example\\.com$",
        "-cors-allow-credentials",
        "-cors-max-age=60",
    )
    cors = config.protocol.cors
    assert cors is not None
    assert cors.allow_methods == f"{DEFAULT_CORS_ALLOW_METHODS}, PUT"
    assert cors.allow_headers == f"{DEFAULT_CORS_ALLOW_HEADERS}, X-Custom"
    assert cors.expose_headers == f"{DEFAULT_CORS_EXPOSE_HEADERS}, X-Out, X-Other"
    assert cors.allow_origin == "^https://example\\.com$"
    assert cors.allow_credentials is True
    assert cors.max_age == "60"


def test_blank_cors_additions_keep_the_defaults() -> None:
    cors = config_for("-cors-allow-methods=  ").protocol.cors
    assert cors is not None and cors.allow_methods == DEFAULT_CORS_ALLOW_METHODS


def test_disable_cors() -> None:
    assert config_for("-disable-cors").protocol.cors is None
    assert config_for("-disable-cors=false").protocol.cors is not None


def test_checksum_algorithms() -> None:
    assert config_for("-checksum-algorithms=").protocol.checksum_algorithms == ()
    assert config_for("-checksum-algorithms", "").protocol.checksum_algorithms == ()
    assert config_for("-checksum-algorithms= sha1 , md5,").protocol.checksum_algorithms == (
        "sha1",
        "md5",
    )


def test_invalid_cors_origin_regex_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="-cors-allow-origin"):
        config_for("-cors-allow-origin=[a-")


def test_idle_timeout_defaults_to_network_timeout() -> None:
    assert config_for("-network-timeout=9s").idle_timeout == 9.0


def test_listen_failure_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:

    code = main(["-host", "999.1.1.1", "-port", "0", "-upload-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("tusd-trio: cannot listen on -host 999.1.1.1")


# --- profiling (-expose-pprof) ------------------------------------------------------


def test_profiling_is_off_by_default_and_the_go_rates_are_zero() -> None:
    config = config_for()
    assert config.protocol.pprof_path == ""
    assert (config.pprof_block_profile_rate, config.pprof_mutex_profile_rate) == (0, 0)


def test_profiling_flags_map_to_fields() -> None:
    config = config_for(
        "-expose-pprof",
        "-pprof-path=ops/profiling",
        "-pprof-block-profile-rate",
        "-1",
        "-pprof-mutex-profile-rate=+5",
    )
    # The path is normalised to "/.../", as the routes need it.
    assert config.protocol.pprof_path == "/ops/profiling/"
    assert (config.pprof_block_profile_rate, config.pprof_mutex_profile_rate) == (-1, 5)
    # -pprof-path alone does not turn the endpoints on.
    assert config_for("-pprof-path=/x/").protocol.pprof_path == ""


@pytest.mark.parametrize("text", ["", "1.5", "ten", "--1"])
def test_the_go_rate_flags_take_signed_integers_only(text: str) -> None:
    with pytest.raises(UsageError, match="-pprof-block-profile-rate"):
        parse_args([f"-pprof-block-profile-rate={text}"])


@pytest.mark.parametrize("path", ["/", "/files/", "/files/prof/"])
def test_a_pprof_path_overlapping_the_uploads_is_refused(path: str) -> None:
    with pytest.raises(UsageError, match="-pprof-path"):
        config_for("-expose-pprof", f"-pprof-path={path}")


def test_tusd_pprof_basic_auth_refuses_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSD_PPROF_AUTH", "user:pass")
    with pytest.raises(UsageError, match="TUSD_PPROF_AUTH is not supported"):
        config_for("-expose-pprof")
    # Without -expose-pprof the variable protects nothing and changes nothing.
    assert config_for().protocol.pprof_path == ""
