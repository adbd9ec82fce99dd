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

ensure_venv() {
    local want_dev="${1:-}"
    if [ ! -x .venv/bin/python ]; then
        "$(pick_python)" -m venv .venv
    fi
    local stamp=".venv/.installed${want_dev:+-dev}"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.1'
        if [ -n "$want_dev" ]; then
            .venv/bin/python -m pip install --quiet --disable-pip-version-check -e . --group dev
        else
            .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[all]'
        fi
        touch "$stamp"
    fi
}
