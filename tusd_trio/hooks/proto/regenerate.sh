#!/usr/bin/env bash
# Regenerate the Python code for hook.proto and commit the result, so that
# users never need a protobuf compiler.  Needs grpcio-tools (the dev group).
#
# The include root is the repository root, so protoc names the file
# tusd_trio/hooks/proto/hook.proto and the generated hook_pb2_grpc.py imports
# "from tusd_trio.hooks.proto import hook_pb2" instead of a top-level
# "import hook_pb2" that would only work with this folder on sys.path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
python="${PYTHON:-python}"
if [ -x "$root/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then
    python="$root/.venv/bin/python"
fi
cd "$root"
rm -f "$here"/hook_pb2.py "$here"/hook_pb2.pyi "$here"/hook_pb2_grpc.py
"$python" -m grpc_tools.protoc \
    -I . \
    --python_out=. \
    --pyi_out=. \
    --grpc_python_out=. \
    tusd_trio/hooks/proto/hook.proto
grep -q '^from tusd_trio.hooks.proto import hook_pb2' "$here/hook_pb2_grpc.py" || {
    echo "regenerate.sh: unexpected import in hook_pb2_grpc.py" >&2
    exit 1
}
echo "regenerated: $(cd "$root" && ls tusd_trio/hooks/proto/hook_pb2*)"
