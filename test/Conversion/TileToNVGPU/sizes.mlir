// RUN: heed-opt %S/../Inputs/gpu-sizes.mlir --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv --attn-specialize-full-tiles --convert-attn-tile-to-nvgpu --canonicalize | FileCheck %S/../Inputs/gpu-sizes.mlir --check-prefixes=CHECK,MC,MC32,NVGPU
// RUN: heed-opt %S/../Inputs/gpu-sizes.mlir --attn-choose-tiling="block-q=64 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-pipeline-kv | sed '/attn.tile.bind_shapes/d' | not heed-opt --convert-attn-tile-to-nvgpu 2>&1 | FileCheck %S/../Inputs/gpu-sizes.mlir --check-prefix=UNBOUND
// The run-time sizes (Sq, Skv, Hkv) in the tensor-core (mma.sync) kernel:
// mask, score, sink and block classifier of the decode variant in
// Inputs/gpu-sizes.mlir, which holds the checks every GPU target shares.
