#!/usr/bin/env bash
# Installs the pinned MCP Python SDK (requirements.txt beside this file) into a venv at DEST
# (default: <repo>/build/mcp-sdk-venv). Idempotent. Used by `make mcp-setup` and, as a
# fallback, by the SDK test (ci/tests/http.rs). Needs python3 with venv and access to PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
dest="${1:-$root/build/mcp-sdk-venv}"
stamp="$dest/.requirements"
if [ -x "$dest/bin/python" ] && cmp -s "$here/requirements.txt" "$stamp"; then
    echo "mcp python sdk already installed in $dest"
    exit 0
fi
python3 -m venv "$dest"
"$dest/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
echo "mcp python sdk installed in $dest ($("$dest/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))'))"
