// RUN: sed 's/bf16/f32/g' %S/../Inputs/gpu-sizes.mlir | heed-opt --attn-choose-tiling="block-q=128 block-kv=16 patches=false" --attn-analyze-mask --attn-to-tile --attn-skip-tiles --convert-attn-tile-to-simt --canonicalize | FileCheck %S/../Inputs/gpu-sizes.mlir --check-prefixes=CHECK,SIMT
// RUN: sed 's/bf16/f32/g' %S/../Inputs/gpu-sizes.mlir | heed-opt --attn-choose-tiling="block-q=128 block-kv=16 patches=false" --attn-analyze-mask --attn-to-tile | sed '/attn.tile.bind_shapes/d' | not heed-opt --convert-attn-tile-to-simt 2>&1 | FileCheck %S/../Inputs/gpu-sizes.mlir --check-prefix=UNBOUND
// The run-time sizes (Sq, Skv, Hkv) in the SIMT kernel (f32): mask, score,
// sink and block classifier of the decode variant in Inputs/gpu-sizes.mlir,
// which holds the checks every GPU target shares.
