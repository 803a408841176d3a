#!/usr/bin/env bash
# Builds llama.cpp's C++ `llama-server` (CPU) from the llama.cpp source that the llama-cpp-python
# sdist on PyPI bundles (no binary wheel exists for it here, and its Python server takes no token
# ids), once per version, into a cache; prints the binary's path. About 9 minutes on 2 cores.
# The cache also keeps llama.cpp's convert_hf_to_gguf.py and its gguf-py (to write an F32 GGUF of
# a Hugging Face model, so a server and transformers compute with identical weights).
#
#   QSTAR_LLAMA_SERVER=$(bash scripts/build_llama_server.sh)
#
# Cache: $QSTAR_LLAMA_CACHE, else ~/.cache/qstar_native/llama-server/<version>.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${QSTAR_LLAMA_CACHE:-$HOME/.cache/qstar_native/llama-server}/$VERSION"
BIN="$CACHE/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
# cmake and ninja from PyPI when the machine has none (a fresh CI machine)
command -v cmake >/dev/null && command -v ninja >/dev/null || python3 -m pip install -q cmake ninja >&2
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$CACHE"
rm -rf "$CACHE/convert" && mkdir -p "$CACHE/convert" && cp -r "$SRC/convert_hf_to_gguf.py" "$SRC/conversion" "$SRC/gguf-py" "$CACHE/convert/" 2>/dev/null \
  || cp -r "$SRC/convert_hf_to_gguf.py" "$SRC/gguf-py" "$CACHE/convert/"
cp "$WORK/build/bin/llama-server" "$BIN.tmp.$$" && mv "$BIN.tmp.$$" "$BIN"  # never a half-copied binary
echo "$BIN"
