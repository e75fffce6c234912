// The warp-specialized Hopper kernel's register budgets (hopperRegisterBudget,
// heed/Conversion/HopperRegisters.h): what setmaxnreg moves the producer and the
// consumer warpgroups to must fit the block's 65536 registers as ptxas hands
// them out at launch (65536 / threads, in multiples of 8, at most 255), each
// budget a multiple of 8 in [24, 256], the consumers' above what they had.
#include "heed/Conversion/HopperRegisters.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace {

TEST(HopperBudget, FitsTheBlocksRegisters) {
  for (int64_t consumers = 1; consumers <= 4; ++consumers) {
    int64_t threads = 128 * (consumers + 1);
    int64_t atLaunch = heed::hopperRegistersAtLaunch(threads);
    for (int64_t producer : {24, 56, 88, 120, 160, 168, 200}) {
      auto [p, c] = heed::hopperRegisterBudget(consumers, producer);
      SCOPED_TRACE(::testing::Message() << consumers << " consumer warpgroups, producer "
                                        << producer << " -> " << p << ", " << c);
      if (!p && !c)
        continue; // unchanged budgets: always fit
      EXPECT_EQ(p, producer);
      EXPECT_EQ(p % 8, 0);
      EXPECT_EQ(c % 8, 0);
      EXPECT_GE(p, 24);
      EXPECT_LE(c, 240);
      EXPECT_LT(p, atLaunch); // the producer gives registers up
      EXPECT_GT(c, atLaunch); // the consumers get more
      EXPECT_LE(128 * (p + consumers * c), atLaunch * threads);
    }
  }
}

TEST(HopperBudget, RegistersAtLaunch) {
  // What ptxas reports for .maxntid 384 / 256 / 512 with .minnctapersm 1.
  EXPECT_EQ(heed::hopperRegistersAtLaunch(384), 168);
  EXPECT_EQ(heed::hopperRegistersAtLaunch(256), 248);
  EXPECT_EQ(heed::hopperRegistersAtLaunch(512), 128);
}

TEST(HopperBudget, FlashAttention3Splits) {
  // Two consumer warpgroups (384 threads, 168 registers each at launch):
  // FlashAttention-3's 24 / 240, heed's default 56 / 224.
  EXPECT_EQ(heed::hopperRegisterBudget(2, 24), std::make_pair(int64_t(24), int64_t(240)));
  EXPECT_EQ(heed::hopperRegisterBudget(2, heed::kHopperProducerRegisters),
            std::make_pair(int64_t(56), int64_t(224)));
  EXPECT_EQ(heed::hopperRegisterBudget(2, 120), std::make_pair(int64_t(120), int64_t(192)));
  // Three (512 threads, 128 each): 24 / 160.
  EXPECT_EQ(heed::hopperRegisterBudget(3, 24), std::make_pair(int64_t(24), int64_t(160)));
  // One consumer warpgroup has 248 at launch already: nothing to move.
  EXPECT_EQ(heed::hopperRegisterBudget(1, 24), std::make_pair(int64_t(0), int64_t(0)));
  // A producer that would not give anything up: unchanged.
  EXPECT_EQ(heed::hopperRegisterBudget(2, 168), std::make_pair(int64_t(0), int64_t(0)));
}

} // namespace
