# Make fragment for the MCP crates; the root Makefile includes it:
#     include tools/mcp-cli/mcp.mk
# and makes its `setup` depend on `mcp-setup`.
#
# mcp-setup: installs the pinned MCP Inspector CLI (package-lock.json) into build/node; the
#            mcp-cli integration test drives the stdio bridge with it. Also the pinned MCP
#            conformance suite (+ the Node.js 22 it needs) into build/conformance and the
#            MCP Python SDK into build/mcp-sdk-venv, which the HTTP VM tests run
#            (ci/tests/http.rs).
# mcp-test:  the mcp crate's unit/fuzz tests and mcp-cli's integration tests.

MCP_CLI_DIR := tools/mcp-cli

.PHONY: mcp-setup mcp-test
mcp-setup:
	bash $(MCP_CLI_DIR)/inspector/install.sh
	bash $(MCP_CLI_DIR)/conformance/install.sh
	bash $(MCP_CLI_DIR)/sdk/install.sh

mcp-test: mcp-setup
	cargo test -p mcp -p mcp-cli
