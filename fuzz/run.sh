#!/usr/bin/env bash
# Run the atheris target over the protocol core for a bounded time.
#
#   fuzz/run.sh                       # 60 s
#   FUZZ_TIME=600 fuzz/run.sh         # longer
#   fuzz/run.sh -runs=100000          # extra libFuzzer flags are passed on
#   fuzz/run.sh crash-1234...         # replay a crash file
#
# Installs atheris into .venv if it is missing.  Exits non-zero on a crash (libFuzzer
# exits with 77 for an uncaught Python exception); the crashing input is written
# to $FUZZ_ARTIFACTS (default: a fresh temporary directory) and its path printed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if ! "$python" -c "import atheris" >/dev/null 2>&1; then
    echo "== installing atheris"
    "$python" -m pip install --quiet atheris
fi
artifacts="${FUZZ_ARTIFACTS:-$(mktemp -d "${TMPDIR:-/tmp}/tusd-trio-fuzz.XXXXXX")}"
mkdir -p "$artifacts"
echo "== fuzzing the protocol core for ${FUZZ_TIME:-60} s (artifacts in $artifacts)"
exec "$python" "$root/fuzz/fuzz_headers.py" \
    -max_total_time="${FUZZ_TIME:-60}" \
    -rss_limit_mb=2048 \
    -timeout=10 \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts/" \
    "$@"
