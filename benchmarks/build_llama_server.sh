#!/usr/bin/env bash
# llama.cpp's own `llama-server`, built from the llama.cpp sources vendored in the
# llama-cpp-python sdist this Python has installed (the same llama.cpp the project runs), for
# benchmarks/multiturn.py --server. CPU only, Release, only the llama-server target (with mtmd
# for images), no web UI, no HTTPS; prints the binary's path on its last line.
#
#   benchmarks/build_llama_server.sh [--jobs N]    default N: 2
#
# Everything lands in the build folder, $LLAMA_SERVER_BUILD, else build/llama-server/ (ignored by
# git); a second run rebuilds only what changed. The sdist is $LLAMA_SDIST, else
# llama_cpp_python-VERSION.tar.gz there, else downloaded there by pip from the package registry.
# Takes about four minutes on 2 cores.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$HERE/.venv/bin/python}"
[[ -x $PY ]] || PY="$(command -v python3)"
JOBS=2
while (($#)); do
    case $1 in
    --jobs) JOBS=$2 && shift ;;
    -h | --help) sed -n '2,12p' "$0" && exit 0 ;;
    *) echo "build_llama_server.sh: unknown argument $1 (see --help)" >&2 && exit 2 ;;
    esac
    shift
done
command -v cmake >/dev/null || { echo "build_llama_server.sh: needs cmake" >&2 && exit 1; }
VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
OUT="${LLAMA_SERVER_BUILD:-$HERE/build/llama-server}"
SDIST="${LLAMA_SDIST:-$OUT/llama_cpp_python-$VERSION.tar.gz}"
mkdir -p "$OUT"
if [[ ! -f $SDIST ]]; then
    "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT"
fi
SOURCE="$OUT/llama_cpp_python-$VERSION/vendor/llama.cpp"
if [[ ! -f $SOURCE/CMakeLists.txt ]]; then
    tar -xzf "$SDIST" -C "$OUT" --wildcards "llama_cpp_python-$VERSION/vendor/llama.cpp/*" \
        --exclude="*/vendor/llama.cpp/models/*" --exclude="*/vendor/llama.cpp/docs/*"
fi
if [[ ! -f $SOURCE/tools/server/CMakeLists.txt ]]; then
    echo "build_llama_server.sh: llama.cpp in llama-cpp-python $VERSION has no tools/server" >&2
    exit 1
fi
# llama-cpp-python's own build: CPU backend with ggml's defaults (native CPU features, OpenMP)
cmake -S "$SOURCE" -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF >"$OUT/configure.log"
cmake --build "$OUT/cmake" --target llama-server -j "$JOBS"
BINARY="$OUT/cmake/bin/llama-server"
"$BINARY" --version
echo "$BINARY"
