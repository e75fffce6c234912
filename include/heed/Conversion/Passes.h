// Lowerings of the attn dialect to target code (declared in Passes.td).
#ifndef HEED_CONVERSION_PASSES_H
#define HEED_CONVERSION_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/AMDGPU/IR/AMDGPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/LLVMIR/ROCDLDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace heed {
/// The backward's query rows per tile where none is asked for (block-q = 0):
/// its KV-major loop keeps dK and dV per key tile and walks 16-row query
/// tiles.
inline constexpr int64_t kBackwardQueryRows = 16;
/// ... and keys per tile (block-kv = 0): a block stages its query and dO
/// tiles once for 64 keys (on a 2-core AVX-512 machine, causal f32 D=64
/// S=4096, with the products in register-sized groups: 128-130 ms against
/// 131-140 at 32 keys and 172 at 16).
inline constexpr int64_t kBackwardKeys = 64;

#define GEN_PASS_DECL
#include "heed/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "heed/Conversion/Passes.h.inc"
} // namespace heed

#endif
