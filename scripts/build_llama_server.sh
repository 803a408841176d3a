#!/usr/bin/env bash
# Builds llama.cpp's C++ `llama-server` (CPU) from the llama.cpp source that the llama-cpp-python
# sdist on PyPI bundles (no binary wheel exists for it here, and its Python server takes no token
# ids), once per version, into a cache; prints the binary's path. About 12 minutes on 2 cores.
#
#   QSTAR_LLAMA_SERVER=$(bash scripts/build_llama_server.sh)
#
# Cache: $QSTAR_LLAMA_CACHE, else ~/.cache/qstar_native/llama-server/<version>.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${QSTAR_LLAMA_CACHE:-$HOME/.cache/qstar_native/llama-server}/$VERSION"
BIN="$CACHE/llama-server"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$CACHE"
cp "$WORK/build/bin/llama-server" "$BIN.tmp.$$" && mv "$BIN.tmp.$$" "$BIN"  # never a half-copied binary
echo "$BIN"
