#!/usr/bin/env bash
# Compile every CUDA source AND the CUDA binding with nvcc (no GPU needed) so CI catches CUDA
# build breaks, including drift between the op list, the records and the binding: the kernels
# (*.cu) for CMAKE_CUDA_ARCHITECTURES in CMake's syntax (default 80; a release build, CMake's
# default, is 75-real;80-real;86-real;89-real;90: SASS for sm_75..sm_90 plus PTX of compute_90;
# NN-real is SASS only, NN-virtual PTX only, NN both), the CUDA binding (bind_cuda.cpp) and the
# module (bindings.cpp with RG_WITH_CUDA) with the host compiler against pybind11, Python and the
# CUDA runtime headers. PTXAS_VERBOSE=1 prints every kernel's registers and spills per arch.
set -euo pipefail
# a Python with pybind11, made absolute before the cd (without resolving a venv's symlink)
PY=$(command -v "${PYTHON:-python3}")
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
cd "$(dirname "$0")"
command -v nvcc >/dev/null || { echo "nvcc not on PATH: CUDA sources not compiled"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
archs=${CMAKE_CUDA_ARCHITECTURES:-80}
flags=()
for a in ${archs//[;,]/ }; do
  n=${a%-real}; n=${n%-virtual}
  case $a in
    *-real) flags+=("-gencode=arch=compute_${n},code=sm_${n}") ;;
    *-virtual) flags+=("-gencode=arch=compute_${n},code=compute_${n}") ;;
    *) flags+=("-gencode=arch=compute_${n},code=[sm_${n},compute_${n}]") ;;
  esac
done
[[ ${PTXAS_VERBOSE:-0} == 1 ]] && flags+=(-Xptxas -v)
for f in *.cu; do nvcc -std=c++17 -O3 "${flags[@]}" -I. -I../include -c "$f" -o "$out/$f.o"; done
py_inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
pb_inc=$("$PY" -c 'import pybind11; print(pybind11.get_include())')
# nvcc drives the host compiler for .cpp files and adds the CUDA include directories
for f in bind_cuda.cpp ../bindings.cpp; do
  nvcc -std=c++20 -O1 -DRG_WITH_CUDA=1 -I. -I.. -I../include -I"$py_inc" -I"$pb_inc" \
    -c "$f" -o "$out/$(basename "$f").o"
done
echo "compiled $(ls *.cu | wc -l) CUDA sources for ${archs} and the CUDA binding with $(nvcc --version | tail -1)"
