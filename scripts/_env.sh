# Shared set-up for scripts/run and scripts/test: a virtual environment in .venv
# with tusd-trio installed (editable) and, for tests, the development tools.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

pick_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "tusd-trio needs Python 3.11 or newer" >&2
    return 1
}

# The lock files in requirements/ (made by scripts/lock) pin every package with
# its hashes; the package itself is then installed editable, without its
# dependencies and without build isolation (hatchling comes from the lock too).
ensure_venv() {
    local want_dev="${1:-}"
    local locks=(-r requirements/all.txt -r requirements/build.txt)
    [ -z "$want_dev" ] || locks=(-r requirements/dev.txt)
    if [ ! -x .venv/bin/python ]; then
        "$(pick_python)" -m venv .venv
    fi
    local stamp=".venv/.installed${want_dev:+-dev}"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] ||
        [ -n "$(find requirements -name '*.txt' -newer "$stamp")" ]; then
        local pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
        "${pip[@]}" install --upgrade 'pip>=25.1'
        "${pip[@]}" install --require-hashes "${locks[@]}"
        "${pip[@]}" install --no-deps --no-build-isolation -e .
        local broken
        if ! broken="$(.venv/bin/python -m pip check 2>&1)"; then
            echo "$broken" >&2
            echo "the packages in requirements/ do not satisfy pyproject.toml:" \
                "run scripts/lock (see docs/development.md, 'Pinned dependencies')" >&2
            return 1
        fi
        touch "$stamp"
    fi
}

# uv (pinned in requirements/dev.txt) for scripts/lock, even when pyproject.toml
# has moved on from the lock files and ensure_venv would refuse.
ensure_uv() {
    if [ ! -x .venv/bin/uv ]; then
        [ -x .venv/bin/python ] || "$(pick_python)" -m venv .venv
        local version
        version="$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/dev.txt 2>/dev/null)"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv${version:+==$version}"
    fi
}

# Install Debian packages for the commands given that are missing (command and
# package share the name): apt_install_missing "why" COMMAND...
apt_install_missing() {
    local why="$1" missing=() sudo=()
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "== installing ${missing[*]} ($why)"
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
