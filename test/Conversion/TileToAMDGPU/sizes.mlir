// RUN: heed-opt %S/../Inputs/gpu-sizes.mlir --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --attn-pipeline-kv="stages=1" --attn-specialize-full-tiles --convert-attn-tile-to-amdgpu --canonicalize | FileCheck %S/../Inputs/gpu-sizes.mlir --check-prefixes=CHECK,MC,MC64,AMDGPU
// RUN: heed-opt %S/../Inputs/gpu-sizes.mlir --attn-choose-tiling="block-q=128 block-kv=0 patches=false" --attn-analyze-mask --attn-to-tile --attn-pipeline-kv="stages=1" | sed '/attn.tile.bind_shapes/d' | not heed-opt --convert-attn-tile-to-amdgpu 2>&1 | FileCheck %S/../Inputs/gpu-sizes.mlir --check-prefix=UNBOUND
// The run-time sizes (Sq, Skv, Hkv) in the MFMA kernel: mask, score, sink
// and block classifier of the decode variant in Inputs/gpu-sizes.mlir,
// which holds the checks every GPU target shares.
