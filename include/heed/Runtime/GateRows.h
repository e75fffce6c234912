// The routed-row lists of a gated kernel (gate = buffer[...], MoH): per
// (batch, query head), the query rows routed to the head (nonzero gate) in
// ascending order, then the others, and how many are routed. The kernel
// tiles each head's routed rows densely (--attn-to-tile); the runtime builds
// the lists per call from the gate buffer (CPU: in host memory,
// runtime/Launch.cpp; GPU: on the caller's stream by the image's
// heed_gate_rows kernel, below, else from a copy of the device buffer,
// GPUAttentionLaunch.cpp) and passes them as the kernel's gate_rows and
// gate_counts (memref<B*H*Sq x i32>, memref<B*H x i32>).
#ifndef HEED_RUNTIME_GATEROWS_H
#define HEED_RUNTIME_GATEROWS_H

#include "heed/Runtime/Tensor.h"

#include <cstdint>
#include <vector>

namespace heed {

struct GateRows {
  std::vector<int32_t> rows;   ///< [(b * H + h) * S + i]
  std::vector<int32_t> counts; ///< [b * H + h]
};

/// The element of the gate buffer (strides `strides`) that row (b, q, h)
/// reads, `layout` being KernelInfo::gate: (buffer, dim of b, dim of q, dim
/// of h).
inline int64_t gateElement(const std::vector<int64_t> &strides,
                           const std::vector<int64_t> &layout, int64_t b, int64_t q,
                           int64_t h) {
  return b * strides[size_t(layout[1])] + q * strides[size_t(layout[2])] +
         h * strides[size_t(layout[3])];
}

/// The device kernel that builds the same lists on the caller's stream
/// (lib/Conversion/TileToGPU/GateRowsKernel.cpp, in every GPU image of a
/// gated variant): `heed_gate_rows(gate, rows, counts, heads, seq)`, one
/// block of kGateRowsThreads threads per (b, h) (block x = b * heads + h),
/// rows and counts as above. Each thread takes a run of consecutive rows, the
/// block sums the runs' routed counts in workgroup memory, and each thread
/// places its run: the lists are buildGateRows' own.
inline constexpr int64_t kGateRowsThreads = 128;
inline constexpr const char *kGateRowsKernel = "heed_gate_rows";

/// The lists for `batches` x `heads` x `seq` query rows. `gate` is the
/// variant's gate buffer in host memory (f32, f16 or bf16; any strides);
/// `layout` is KernelInfo::gate: (buffer, dim of b, dim of q, dim of h).
GateRows buildGateRows(const TensorRef &gate, const std::vector<int64_t> &layout,
                       int64_t batches, int64_t heads, int64_t seq);

} // namespace heed

#endif
