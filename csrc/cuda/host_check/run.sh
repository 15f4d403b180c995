#!/usr/bin/env bash
# Host-side checks of the CUDA backend without a GPU: the kernels AND their launch wrappers
# (grid, block and shared-memory sizes, the device guard, the radix-sort calls) are compiled
# with g++ against an emulation of the CUDA runtime (cuda_runtime.h here) and compared with
# finite differences, naive references and brute-force tile lists. A minute or two on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CXX=${CXX:-g++}
flags=(-std=c++20 -O2 -pthread -I. -I.. -I../../include)
$CXX -std=c++17 -O1 -I.. -I../../include check_math.cpp -o "$out/math" && "$out/math" | tail -1
$CXX -std=c++17 -O1 -I.. -I../../include check_projection.cpp -o "$out/proj" && "$out/proj" | tail -2
$CXX "${flags[@]}" check_device.cpp -o "$out/device" && "$out/device"
# ASan: an index out of range must be flagged, never read
$CXX -std=c++20 -O1 -g -fsanitize=address -pthread -I. -I.. -I../../include check_deform.cpp -o "$out/deform" && "$out/deform" | tail -2
$CXX "${flags[@]}" check_isect.cpp -o "$out/isect" && "$out/isect" | tail -13
$CXX "${flags[@]}" -DNN=12 check_rasterize.cpp -o "$out/rast12" && "$out/rast12" | grep -v "finite differences"
$CXX "${flags[@]}" -DNN=150 -DBIG_TILES=0 check_rasterize.cpp -o "$out/rast150" && "$out/rast150" | grep -E "CH 4|zero|NaN|fails"
# ASan: debug-mode errors name the op; a forced count/fill mismatch is padded, flagged, skipped
$CXX -std=c++20 -O1 -g -fsanitize=address -pthread -I. -I.. -I../../include check_robust.cpp -o "$out/robust" && "$out/robust"
