#!/usr/bin/env bash
# Host-side checks of the CUDA backend without a GPU: the kernels' code is compiled with g++
# against an emulation of threads/blocks/shared memory/warp reductions (cuda_runtime.h here)
# and compared with finite differences and naive references. About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
CXX=${CXX:-g++}
$CXX -std=c++17 -O1 -I.. -I../../include check_math.cpp -o "$out/math" && "$out/math" | tail -1
$CXX -std=c++17 -O1 -I.. -I../../include check_projection.cpp -o "$out/proj" && "$out/proj" | tail -1
$CXX -std=c++20 -O2 -pthread -I. -I.. -I../../include check_isect.cpp -o "$out/isect" && "$out/isect" | tail -1
$CXX -std=c++20 -O2 -pthread -I. -I.. -I../../include check_deform.cpp -o "$out/deform" && "$out/deform" | tail -1
$CXX -std=c++20 -O2 -pthread -DNN=12 -I. -I.. -I../../include check_rasterize.cpp -o "$out/rast12" && "$out/rast12" | grep -E "forward|naive|fails"
$CXX -std=c++20 -O2 -pthread -DNN=150 -I. -I.. -I../../include check_rasterize.cpp -o "$out/rast150" && "$out/rast150" | grep -E "forward|naive|fails"
rm -rf "$out"
