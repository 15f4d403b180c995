#!/usr/bin/env bash
# Compile every CUDA source with nvcc (no GPU needed) so CI catches CUDA build breaks.
# Architectures from CMAKE_CUDA_ARCHITECTURES (default 80; a release build covers 80;86;89;90).
set -euo pipefail
cd "$(dirname "$0")"
command -v nvcc >/dev/null || { echo "nvcc not on PATH: CUDA sources not compiled"; exit 1; }
out=$(mktemp -d)
archs=${CMAKE_CUDA_ARCHITECTURES:-80}
flags=()
for a in ${archs//;/ }; do flags+=("-gencode=arch=compute_${a},code=sm_${a}"); done
for f in *.cu; do nvcc -std=c++17 -O3 "${flags[@]}" -I. -I../include -c "$f" -o "$out/$f.o"; done
echo "compiled $(ls *.cu | wc -l) CUDA sources for sm_${archs//;/,sm_} with $(nvcc --version | tail -1)"
rm -rf "$out"
