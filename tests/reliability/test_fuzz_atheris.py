"""Run the atheris target over the protocol core (fuzz/fuzz_headers.py) for ~20 s.

Goes through fuzz/run.sh, which installs atheris into this Python if it is missing
(it is not a declared dev dependency).  Any exception other than a TusError, or a
broken property, makes libFuzzer exit non-zero; the output, with the crashing input
in base64, is shown on failure.  Set FUZZ_TIME to change the duration.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "fuzz" / "run.sh"


def test_protocol_core_survives_fuzzing(tmp_path: Path) -> None:
    seconds = int(os.environ.get("FUZZ_TIME", "20"))
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "FUZZ_TIME": str(seconds),
        "FUZZ_ARTIFACTS": str(tmp_path),
    }
    result = subprocess.run(
        ["bash", str(RUN)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        check=False,
    )
    output = (result.stdout + result.stderr)[-6000:]
    if "import atheris" in output or "No matching distribution" in output:
        raise AssertionError(f"atheris could not be installed for {sys.executable}:\n{output}")
    assert result.returncode == 0, f"fuzzing found a crash (exit {result.returncode}):\n{output}"
    assert "Done " in result.stderr, output
