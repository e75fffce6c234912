// Buffer summaries: what a variant's block classifier reads to reason about
// a rank-1 integer buffer (document ids and the like) over a range of
// entries. Built by the runtime per call (CPU: cached by buffer content in
// runtime/Launch.cpp; GPU: from the device buffer, GPUAttentionLaunch.h) and
// passed to the kernel as a memref<levels x blocks x 2 x i64>.
#ifndef HEED_RUNTIME_BUFFERSUMMARY_H
#define HEED_RUNTIME_BUFFERSUMMARY_H

#include "heed/Runtime/Tensor.h"

#include <cstdint>
#include <vector>

namespace heed {

/// A sparse table: data[(level * blocks + i) * 2 + {0, 1}] is the min and
/// max of the buffer over the 2^level consecutive blocks of `block` entries
/// starting at block i (defined for i + 2^level <= blocks), as i64. The
/// classifier (--attn-analyze-mask) answers "min and max over entries
/// [lo, hi]" with two overlapping power-of-two runs of blocks.
struct SummaryTable {
  std::vector<int64_t> data;
  int64_t levels = 1, blocks = 1;
};

/// The table of a rank-1 integer or bool buffer in host memory (any stride).
SummaryTable buildSummaryTable(const TensorRef &hostBuffer, int64_t block);

} // namespace heed

#endif
