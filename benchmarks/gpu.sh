#!/usr/bin/env bash
# GPU, ready to prove: every model of a read on CPU first (the reference), then on an NVIDIA GPU
# (llama.cpp built with CUDA and every layer offloaded; ONNX Runtime's CUDA and TensorRT
# providers; TensorRT engines from `edge-agent export tensorrt`), each printed against CPU with its
# numerical difference (logits, embeddings, masks, tokens, the read's steps) and its speed-up.
#
#   benchmarks/gpu.sh [--cpu-only] [--tiny] [--work DIR]   run (offline); GPU half when one is seen
#   benchmarks/gpu.sh --prepare                             fetch what the offline GPU machine needs
#
# The models are the project's own tiny ones, built here from random weights (tiny VLM -> GGUF and
# ONNX, tiny locate model, SAM2 hiera-t: 1024 px, or 256 px with --tiny). Without a GPU (or with
# --cpu-only) only the CPU half runs, which is what tests/benchmarks/test_gpu_script.py checks.
# The GPU machine has no internet: the CUDA build of llama-cpp-python compiles from the sdist in
# .gpu-cache/ (or $LLAMA_SDIST), with scikit-build-core from the same folder; `--prepare` puts both
# there (13 MB: the sdist without its git pack, test vocabularies and docs) on a machine with the
# package registry. The GPU half also needs nvcc, cmake >= 3.21, the
# `gpu` extra (onnxruntime-gpu, tensorrt) in this Python. Not a test; exit 0 when every step ran.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$HERE/.venv/bin/python}"
[[ -x $PY ]] || PY="$(command -v python3)"
CACHE="$HERE/.gpu-cache"
MODE=auto TINY=() WORK="" PREPARE=0
while (($#)); do
    case $1 in
    --cpu-only) MODE=cpu ;;
    --tiny) TINY=(--tiny) ;;
    --work) WORK=$2 && shift ;;
    --prepare) PREPARE=1 ;;
    -h | --help) sed -n '2,17p' "$0" && exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2 && exit 2 ;;
    esac
    shift
done
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
EA=("$PY" -m edge_agent.cli)
CHECK=("$PY" -P "$HERE/benchmarks/gpu_check.py")
LLAMA_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
say() { printf '\n== %s\n' "$*"; }
quiet() { # a step's output only when it fails
    local log
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || { tail -30 "$log" >&2 && rm -f "$log" && return 1; }
    rm -f "$log"
}

if ((PREPARE)); then
    mkdir -p "$CACHE/sdist"
    "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" \
        -d "$CACHE/sdist"
    "${CHECK[@]}" slim-sdist "$CACHE/sdist/llama_cpp_python-$LLAMA_VERSION.tar.gz" \
        "$CACHE/llama_cpp_python-$LLAMA_VERSION.tar.gz"
    rm -rf "$CACHE/sdist"
    "$PY" -m pip download "scikit-build-core[pyproject]>=0.9.2" -d "$CACHE"
    du -sh "$CACHE"
    echo "prepared $CACHE; carry it with the checkout to the GPU machine"
    exit 0
fi
if [[ $MODE == auto ]]; then
    if nvidia-smi -L >/dev/null 2>&1; then MODE=gpu; else MODE=cpu; fi
fi
if [[ -z $WORK ]]; then
    WORK="$(mktemp -d -t edge-agent-gpu-XXXXXX)"
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"

say "tiny models, built by our export code (in $WORK)"
quiet "${EA[@]}" export tiny-vlm "$WORK/hf" --seed 0
quiet "${EA[@]}" export gguf "$WORK/hf" --out "$WORK/gguf" --quant q8_0 --pre-tokenizer qwen2
quiet "${EA[@]}" export onnx-llm "$WORK/hf" --out "$WORK/onnx-llm"
quiet "${EA[@]}" export tiny-locate "$WORK/locate" --seed 0
read -r -a SAM_OVERRIDES <<<"$("${CHECK[@]}" sam2-checkpoint "$WORK/sam2.pt" "${TINY[@]}")"
quiet "${EA[@]}" export onnx sam2 --checkpoint "$WORK/sam2.pt" --config sam2.1_hiera_t \
    --out "$WORK/sam2" "${SAM_OVERRIDES[@]}"
"$PY" -c "import sys; from pathlib import Path; from edge_agent.sample import write_sample_study
write_sample_study(Path(sys.argv[1]))" "$WORK/study"
GGUF="$WORK/gguf/model-q8_0.gguf"

say "CPU: the reference"
for kind in sam2 locate llm; do
    folder="$WORK/$kind"
    [[ $kind == llm ]] && folder="$WORK/onnx-llm"
    "${CHECK[@]}" "$kind" "$folder" --provider cpu --out "$WORK/cpu-$kind.npz"
done
"${CHECK[@]}" llama "$GGUF" --gpu-layers 0 --out "$WORK/cpu-llama.npz"
"${CHECK[@]}" read "$WORK/study" "$GGUF" "$WORK/read-llama-cpu" --out "$WORK/cpu-read-llama.npz"
"${CHECK[@]}" read "$WORK/study" "$WORK/onnx-llm" "$WORK/read-onnx-cpu" --provider cpu \
    --out "$WORK/cpu-read-onnx.npz"
if [[ $MODE == cpu ]]; then
    say "no NVIDIA GPU here (or --cpu-only): the CUDA and TensorRT half is skipped"
    exit 0
fi

say "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
compare() { "${CHECK[@]}" compare "$WORK/cpu-$1.npz" "$WORK/$2-$1.npz" --label "$2 $1"; }
SDIST="${LLAMA_SDIST:-$(ls "$CACHE"/llama_cpp_python-"$LLAMA_VERSION".tar.gz 2>/dev/null || true)}"
missing=()
[[ -f $SDIST ]] || missing+=("the llama-cpp-python $LLAMA_VERSION sdist (run --prepare where pip can reach the registry, or set LLAMA_SDIST)")
command -v nvcc >/dev/null || missing+=("nvcc (the CUDA toolkit)")
command -v cmake >/dev/null || missing+=("cmake >= 3.21")
"$PY" -c "import tensorrt" 2>/dev/null || missing+=("tensorrt (pip install 'edge-agent[gpu]')")
"$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" ||
    missing+=("onnxruntime-gpu with the CUDA provider (pip install 'edge-agent[gpu]')")
if ((${#missing[@]})); then
    printf 'gpu.sh: the GPU half needs:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi

say "llama.cpp with CUDA, every layer offloaded"
CMAKE_ARGS="-DGGML_CUDA=on" quiet "$PY" -m pip install --no-index --find-links "$CACHE" \
    --no-deps --target "$WORK/llama-cuda" "$SDIST"
PYTHONPATH="$WORK/llama-cuda:$PYTHONPATH" "${CHECK[@]}" llama "$GGUF" --gpu-layers -1 \
    --out "$WORK/cuda-llama.npz"
compare llama cuda
PYTHONPATH="$WORK/llama-cuda:$PYTHONPATH" "${CHECK[@]}" read "$WORK/study" "$GGUF" \
    "$WORK/read-llama-cuda" --gpu-layers -1 --out "$WORK/cuda-read-llama.npz"
compare read-llama cuda

say "TensorRT engines (edge-agent export tensorrt)"
mkdir -p "$WORK/trt"
build() { # NAME ARGS...: time one engine build
    local name=$1 start=$SECONDS
    shift
    quiet "${EA[@]}" export tensorrt "$@" --out "$WORK/trt/$name.plan" --fp16
    echo "$name.plan built in $((SECONDS - start)) s ($(du -h "$WORK/trt/$name.plan" | cut -f1))"
}
build sam2-encoder "$WORK/sam2/$("$PY" -c "import json,sys; m=json.load(open(sys.argv[1]))
print(next(f['name'] for f in m['files'] if f['role'] == 'encoder'))" "$WORK/sam2/manifest.json")"
build locate "$WORK/locate"
read -r -a DECODER <<<"$("${CHECK[@]}" trt-shapes "$WORK/onnx-llm" decoder)"
build llm-decoder "${DECODER[@]}"
read -r -a VISION <<<"$("${CHECK[@]}" trt-shapes "$WORK/onnx-llm" vision)"
build llm-vision "${VISION[@]}"

for provider in cuda tensorrt; do
    say "ONNX Runtime, $provider provider"
    for kind in sam2 locate llm; do
        folder="$WORK/$kind"
        [[ $kind == llm ]] && folder="$WORK/onnx-llm"
        # the warm-up run (not timed) pays for the TensorRT provider's own engine builds
        "${CHECK[@]}" "$kind" "$folder" --provider "$provider" --out "$WORK/$provider-$kind.npz"
        compare "$kind" "$provider"
    done
    "${CHECK[@]}" read "$WORK/study" "$WORK/onnx-llm" "$WORK/read-onnx-$provider" \
        --provider "$provider" --out "$WORK/$provider-read-onnx.npz"
    compare read-onnx "$provider"
done
