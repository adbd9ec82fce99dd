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
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The tag of the image built for the tests.
TEST_TAG = "localhost/tusd-trio:test"
#: Debian packages these tests need besides Python's.
TOOLS = ("podman", "runc", "debootstrap", "slirp4netns")


@dataclass
class Measurements:
    """Numbers for the end-of-session summary (not asserted: machines are noisy)."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


MEASUREMENTS = Measurements()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASUREMENTS.lines:
        terminalreporter.section("container image")
        for line in MEASUREMENTS.lines:
            terminalreporter.write_line(line)


class Podman:
    """Runs podman with this session's configuration."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"podman {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        return done


def _private_podman(directory: Path) -> dict[str, str]:
    """containers.conf and storage.conf for a store of this session's own."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    (directory / "containers.conf").write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'tmp_dir = "{directory}/tmp"\n'
        "[network]\n"
        f'network_config_dir = "{directory}/networks"\n'
    )
    (directory / "storage.conf").write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{directory}/storage"\n'
        f'runroot = "{directory}/run"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_CONF": str(directory / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(directory / "storage.conf"),
    }


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
    client = Podman(_private_podman(directory))
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Container:
    """One tusd-trio container with its port published on 127.0.0.1."""

    def __init__(self, podman: Podman, image: str, name: str, volume: str) -> None:
        self.podman = podman
        self.image = image
        self.name = name
        self.volume = volume
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, *flags: str) -> float:
        """``podman run`` with extra daemon flags; seconds until /health answered."""
        started = time.monotonic()
        self.podman.run(
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "slirp4netns",
            "--publish",
            f"127.0.0.1:{self.port}:1080",
            "--volume",
            f"{self.volume}:/data",
            self.image,
            *flags,
        )
        self.wait_healthy()
        return time.monotonic() - started

    def start(self) -> float:
        """Start the stopped container again; seconds until /health answered."""
        started = time.monotonic()
        self.podman.run("start", self.name)
        self.wait_healthy()
        return time.monotonic() - started

    def stop(self, timeout: int = 60) -> float:
        """``podman stop`` (SIGTERM, SIGKILL after ``timeout``); seconds it took."""
        started = time.monotonic()
        self.podman.run("stop", "--time", str(timeout), self.name, timeout=timeout + 60)
        return time.monotonic() - started

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect("{{.State.Status}}")
            if state not in ("running", "created", "configured", "initialized"):
                pytest.fail(f"container {self.name} is {state}:\n{self.logs()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"/health did not answer within {timeout} s:\n{self.logs()}")
            time.sleep(0.02)

    def inspect(self, template: str) -> str:
        return self.podman.run("inspect", "--format", template, self.name).stdout.strip()

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.podman.run("exec", self.name, *command, check=False)

    def logs(self) -> str:
        done = self.podman.run("logs", self.name, check=False)
        return done.stdout + done.stderr

    def volume_dir(self) -> Path:
        """Where the named volume lies on this machine (rootful podman, no user namespace)."""
        return Path(
            self.podman.run(
                "volume", "inspect", "--format", "{{.Mountpoint}}", self.volume
            ).stdout.strip()
        )


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
