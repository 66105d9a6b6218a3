#!/usr/bin/env bash
# Installs the pinned MCP Inspector (see package.json / package-lock.json beside this file)
# into DEST (default: <repo>/build/node). Idempotent: does nothing when the pinned version is
# already there. Used by the Makefile's setup and, as a fallback, by mcp-cli's integration
# test. Needs node >= 20 and npm with access to the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
dest="${1:-$root/build/node}"
want="$(node -e 'console.log(require(process.argv[1]).dependencies["@modelcontextprotocol/inspector"])' "$here/package.json")"
installed="$dest/node_modules/@modelcontextprotocol/inspector/package.json"
if [ -f "$installed" ] && [ -x "$dest/node_modules/.bin/mcp-inspector" ]; then
    have="$(node -e 'console.log(require(process.argv[1]).version)' "$installed")"
    if [ "$have" = "$want" ]; then
        echo "mcp-inspector $have already installed in $dest"
        exit 0
    fi
fi
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
echo "mcp-inspector $want installed in $dest"
