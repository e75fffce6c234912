// The buffer summaries' device kernels (heed_summary_<n>,
// lib/Conversion/TileToGPU/SummaryKernels.cpp): each variant's sm_80 PTX
// holds one per summarized buffer, and run level by level in the PTX
// emulator (unittests/CAPI/ptx_emulator.h) on fresh random buffers (seed
// printed) of every integer dtype, rank 1 and rank 2, lengths around the
// block edges, the table it writes is the host's (buildSummaryTable) bit
// for bit: what the runtime launches instead of copying the buffer to the
// host (docs/runtime.md, "Buffer summaries on the device").
#include "EmulatedKernel.h"

#include "heed/Runtime/BufferSummary.h"
#include "heed/Runtime/Tensor.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>

using namespace heed;

namespace {

uint64_t freshSeed() {
  static uint64_t base = std::random_device{}();
  return base++;
}

struct Case {
  const char *spec;
  DType dtype;
  bool rank2;
};

/// A buffer of `dtype` holding `n` random entries (runs of equal values, as
/// document ids have, and some wide values).
std::vector<char> randomBuffer(DType dtype, int64_t n, std::mt19937_64 &rng) {
  std::vector<char> bytes(size_t(std::max<int64_t>(n, 1)) * dtypeSize(dtype), 0);
  std::uniform_int_distribution<int64_t> run(1, 40), wide(-(int64_t(1) << 40), int64_t(1) << 40);
  int64_t value = 0;
  for (int64_t i = 0, left = 0; i < n; ++i, --left) {
    if (left <= 0) {
      left = run(rng);
      value = wide(rng);
    }
    switch (dtype) {
    case DType::I8: bytes[size_t(i)] = char(int8_t(value)); break;
    case DType::Bool: bytes[size_t(i)] = char(value & 1 ? 1 : 0); break;
    case DType::I32: {
      int32_t v = int32_t(value);
      std::memcpy(&bytes[size_t(i) * 4], &v, 4);
      break;
    }
    default: std::memcpy(&bytes[size_t(i) * 8], &value, 8); break;
    }
  }
  return bytes;
}

TEST(SummaryKernel, DeviceTablesAreTheHostTables) {
  const Case cases[] = {
      {"variant d { buffer doc: i32[Skv]\n mask = document(doc) }", DType::I32, false},
      {"variant d { buffer doc: i64[Skv]\n mask = doc[q] == doc[kv] }", DType::I64, false},
      {"variant d { buffer doc: i8[Skv]\n mask = doc[q] == doc[kv] }", DType::I8, false},
      {"variant d { buffer keep: bool[Skv]\n mask = keep[kv] || causal() }", DType::Bool, false},
      {"variant d { buffer doc: i32[B, Skv]\n mask = doc[b, q] == doc[b, kv] }", DType::I32,
       true},
  };
  const std::vector<int64_t> shapes[] = {{1}, {15}, {16}, {17}, {300}, {1029}};
  const std::vector<int64_t> shapes2[] = {{1, 1}, {2, 16}, {3, 77}, {5, 130}, {2, 0}};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.spec);
    std::string name = summaryKernelName(0);
    emulated::EmulatedKernel kernel;
    ASSERT_TRUE(kernel.load(c.spec, name));
    void *function = kernel.function;
    char err[512] = {0};
    for (const std::vector<int64_t> &shape :
         c.rank2 ? std::vector<std::vector<int64_t>>(std::begin(shapes2), std::end(shapes2))
                 : std::vector<std::vector<int64_t>>(std::begin(shapes), std::end(shapes))) {
      uint64_t seed = freshSeed();
      std::string dims = std::to_string(shape[0]) +
                         (shape.size() > 1 ? "x" + std::to_string(shape[1]) : "");
      std::printf("[ case     ] %s shape %s seed=%llu\n", toString(c.dtype), dims.c_str(),
                  (unsigned long long)seed);
      SCOPED_TRACE("seed " + std::to_string(seed) + " shape " + dims);
      std::mt19937_64 rng(seed);
      int64_t n = shape[0] * (shape.size() > 1 ? shape[1] : 1);
      std::vector<char> data = randomBuffer(c.dtype, n, rng);
      TensorRef buffer{data.data(), c.dtype, shape, {}};
      SummaryTable host = buildSummaryTable(buffer, 16);
      SummaryLayout l = summaryLayout(buffer, 16);
      ASSERT_EQ(l.levels, host.levels);
      ASSERT_EQ(l.blocks, host.blocks);
      // The device table, zeroed as the runtime zeroes it, then the levels.
      std::vector<int64_t> table(size_t(l.levels * l.blocks * 2), 0);
      ptxemu_allocation(data.data(), data.size(), 1);
      ptxemu_allocation(table.data(), table.size() * 8, 1);
      for (int64_t level = 0; level < l.levels; ++level) {
        std::vector<int64_t> words;
        emulated::appendMemref(words, data.data(), shape, buffer.effectiveStrides());
        emulated::appendMemref(words, table.data(), {l.levels, l.blocks, 2}, {l.blocks * 2, 2, 1});
        words.insert(words.end(), {level, l.length, l.rowLength, l.rowStride, l.block,
                                   int64_t(c.dtype == DType::Bool)});
        std::vector<void *> params;
        for (int64_t &w : words)
          params.push_back(&w);
        unsigned threads = unsigned(kSummaryThreads);
        unsigned grid[3] = {unsigned((l.blocks + threads - 1) / threads), 1, 1},
                 block[3] = {threads, 1, 1};
        ASSERT_EQ(ptxemu_launch(function, grid, block, 0, params.data(), err, sizeof err), 0)
            << "level " << level << ": " << err;
      }
      ptxemu_allocation(data.data(), 0, 0);
      ptxemu_allocation(table.data(), 0, 0);
      EXPECT_EQ(table, host.data);
    }
  }
}

} // namespace
