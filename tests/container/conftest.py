"""The container image, built from the Containerfile and run with podman (rootful).

No image registry is reachable from CI, so the image is built on a base made from
Debian's packages (``scripts/build-image --debian-base``: debootstrap, then
``podman import``), in a podman store of this test session's own that is removed at
the end: nothing is cached between runs.  When the image cannot be built the tests
error (never skip).  ``TUSD_TRIO_TEST_IMAGE`` names an image that is already built
(in podman's store as the environment configures it): then no build, for iterating
on these tests.

What rootful podman needs on CI's machines (Debian bookworm's podman 4.3), each
found by trying:

- runc, not crun: crun refuses the host's hybrid cgroup layout ("cgroups in hybrid
  mode not supported"), with or without ``--cgroups disabled``.
- rlimits no higher than the host allows: root here lacks CAP_SYS_RESOURCE, and
  podman asks for nofile 1048576 by default ("error setting rlimit type 7"); podman
  itself runs with nproc 32768, so a container may not ask for more either.
- the build's RUN steps use the host's network (``--network host``); the containers
  use slirp4netns with a port published on 127.0.0.1, so that the tests reach them
  through loopback alone (no host bridge, no NAT rules).
- no systemd: podman cannot schedule the HEALTHCHECK timer (it logs "unable to get
  systemd connection"), so the tests run ``podman healthcheck run`` themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support.podman import (
    MEASUREMENTS,
    TEST_TAG,
    TOOLS,
    Container,
    Podman,
    private_podman,
)

ROOT = Path(__file__).resolve().parents[2]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASUREMENTS.lines:
        terminalreporter.section("container image")
        for line in MEASUREMENTS.lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the container tests need {', '.join(missing)} (Debian packages; "
            "scripts/test installs them): apt-get install " + " ".join(missing)
        )
    if os.environ.get("TUSD_TRIO_TEST_IMAGE"):
        yield Podman(dict(os.environ))
        return
    # A short path: conmon's sockets live under it (at most 108 bytes).
    directory = Path(tempfile.mkdtemp(prefix="tusd-pm-", dir="/tmp"))
    client = Podman(private_podman(directory))
    try:
        yield client
    finally:
        # Not `podman system reset`: that also removes the machine's networks.
        client.run("rm", "--all", "--force", "--time", "0", check=False)
        client.run("volume", "prune", "--force", check=False)
        client.run("rmi", "--all", "--force", check=False, timeout=300)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The image under test: built from the Containerfile on a Debian base."""
    given = os.environ.get("TUSD_TRIO_TEST_IMAGE")
    if given:
        return given
    started = time.monotonic()
    podman_build_args = ["--network", "host"]
    build = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "build-image"),
            "--debian-base",
            TEST_TAG,
            "--",
            *podman_build_args,
        ],
        env=podman.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(
            "the container image could not be built (scripts/build-image --debian-base):\n"
            + build.stdout[-4000:]
            + build.stderr[-4000:]
        )
    MEASUREMENTS.add(f"built in {time.monotonic() - started:.0f} s:")
    MEASUREMENTS.lines.extend(
        "  " + line for line in build.stdout.splitlines() if line.startswith("== ")
    )
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", TEST_TAG).stdout)
    MEASUREMENTS.add(f"image size: {size / 1e6:.0f} MB")
    return TEST_TAG


@pytest.fixture
def container(podman: Podman, image: str, request: pytest.FixtureRequest) -> Iterator[Container]:
    """A container (not started) with a fresh named volume for /data."""
    name = "tusd-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    podman.run("rm", "--force", "--time", "0", name, check=False)
    podman.run("volume", "rm", "--force", name + "-data", check=False)
    podman.run("volume", "create", name + "-data")
    made = Container(podman, image, name, name + "-data")
    try:
        yield made
    finally:
        podman.run("rm", "--force", "--time", "0", name, check=False)
        podman.run("volume", "rm", "--force", name + "-data", check=False)
