"""podman for the container image tests: a client with the session's own configuration,
one container of the image, and the numbers for the session summary."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .services import free_port

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


def private_podman(directory: Path) -> dict[str, str]:
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
