// The routed rows' device kernel (heed_gate_rows,
// lib/Conversion/TileToGPU/GateRowsKernel.cpp): a gated variant's sm_80 PTX
// holds it, and run in the PTX emulator (unittests/CAPI/ptx_emulator.h) on
// fresh random gates (seed printed) of f32, f16 and bf16, in each of the
// gate's dim orders, with +-0, NaN and subnormal weights, lengths around one
// thread's run and the block's 128 runs, the lists
// and counts it writes are the host's (buildGateRows) word for word: what
// the runtime launches instead of copying the gate to the host
// (docs/runtime.md, "Routed rows on the device").
#include "EmulatedKernel.h"

#include "heed/Runtime/GateRows.h"
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

/// A random gate element: mostly 0 or -0 (not routed), else a weight, now
/// and then NaN or a subnormal (routed: their bits are not all 0).
uint32_t randomGateBits(DType dtype, std::mt19937_64 &rng) {
  std::uniform_int_distribution<int> pick(0, 9);
  std::uniform_real_distribution<float> weight(0.01f, 1.0f);
  bool half = dtype != DType::F32;
  switch (pick(rng)) {
  case 0: return half ? 0x8000u : 0x80000000u; // -0
  case 1: return half ? 0x7e00u : 0x7fc00000u; // NaN
  case 2: return 1u;                           // the smallest subnormal
  case 3:
  case 4:
  case 5: {
    float w = weight(rng);
    uint32_t bits;
    std::memcpy(&bits, &w, 4);
    if (dtype == DType::BF16)
      return bits >> 16 ? bits >> 16 : 1u;
    if (dtype == DType::F16)
      return 0x3c00u; // 1.0
    return bits;
  }
  default: return 0u; // +0
  }
}

struct Case {
  const char *spec;
  DType dtype;
  int order[3]; ///< dim of b, q, h in the buffer
};

TEST(GateRowsKernel, DeviceListsAreTheHostLists) {
  const Case cases[] = {
      {"variant g { buffer r: f32[B, Sq, H]\n gate = r[b, q, h]\n mask = causal() }", DType::F32,
       {0, 1, 2}},
      {"variant g { buffer r: bf16[B, H, Sq]\n gate = r[b, h, q] }", DType::BF16, {0, 2, 1}},
      {"variant g { buffer r: f16[Sq, B, H]\n gate = r[q, b, h] }", DType::F16, {1, 0, 2}},
  };
  // (batch, heads, seq): one row, runs of one row, of two, a seq that is not
  // a multiple of the 128 runs, rows past 128 runs of 8, an empty sequence.
  const int64_t shapes[][3] = {{1, 1, 1}, {2, 3, 77}, {1, 2, 128}, {3, 1, 257},
                               {1, 2, 1029}, {2, 2, 0}};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.spec);
    emulated::EmulatedKernel kernel;
    ASSERT_TRUE(kernel.load(c.spec, kGateRowsKernel));
    void *function = kernel.function;
    char err[512] = {0};
    for (const auto &s : shapes) {
        int64_t batches = s[0], heads = s[1], seq = s[2];
        uint64_t seed = freshSeed();
        std::printf("[ case     ] %s B=%lld H=%lld Sq=%lld seed=%llu\n", toString(c.dtype),
                    (long long)batches, (long long)heads, (long long)seq,
                    (unsigned long long)seed);
        SCOPED_TRACE("seed " + std::to_string(seed) + " Sq " + std::to_string(seq));
        std::mt19937_64 rng(seed);
        std::vector<int64_t> shape(3);
        shape[size_t(c.order[0])] = batches;
        shape[size_t(c.order[1])] = seq;
        shape[size_t(c.order[2])] = heads;
        size_t n = size_t(batches * heads * seq), width = dtypeSize(c.dtype);
        std::vector<char> data(std::max<size_t>(n, 1) * width, 0);
        for (size_t i = 0; i < n; ++i) {
          uint32_t bits = randomGateBits(c.dtype, rng);
          std::memcpy(&data[i * width], &bits, width);
        }
        TensorRef gate{data.data(), c.dtype, shape, {}};
        std::vector<int64_t> layout = {0, c.order[0], c.order[1], c.order[2]};
        GateRows host = buildGateRows(gate, layout, batches, heads, seq);
        // The device's, poisoned first.
        std::vector<int32_t> rows(std::max<size_t>(n, 1), -7),
            counts(size_t(batches * heads), -7);
        ptxemu_allocation(data.data(), data.size(), 1);
        ptxemu_allocation(rows.data(), rows.size() * 4, 1);
        ptxemu_allocation(counts.data(), counts.size() * 4, 1);
        std::vector<int64_t> words;
        emulated::appendMemref(words, data.data(), shape, gate.effectiveStrides());
        emulated::appendMemref(words, rows.data(), {int64_t(n)}, {1});
        emulated::appendMemref(words, counts.data(), {batches * heads}, {1});
        words.insert(words.end(), {heads, seq});
        std::vector<void *> params;
        for (int64_t &w : words)
          params.push_back(&w);
        unsigned grid[3] = {unsigned(batches * heads), 1, 1},
                 block[3] = {unsigned(kGateRowsThreads), 1, 1};
        int launched = ptxemu_launch(function, grid, block, 0, params.data(), err, sizeof err);
        ptxemu_allocation(data.data(), 0, 0);
        ptxemu_allocation(rows.data(), 0, 0);
        ptxemu_allocation(counts.data(), 0, 0);
        ASSERT_EQ(launched, 0) << err;
        rows.resize(n);
        EXPECT_EQ(rows, host.rows);
        EXPECT_EQ(counts, host.counts);
      }
  }
}

} // namespace
