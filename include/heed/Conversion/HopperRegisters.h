// The register file of a warp-specialized Hopper block (the wgmma kernel,
// lib/Conversion/TileToHopper): what ptxas gives each thread at launch and
// how setmaxnreg shares it out between the producer warpgroup and the
// consumer warpgroups; and its dynamic shared memory. The schedule
// (lib/Pipelines) and compileCUDA pick budgets and staging slots with it, the
// lowering checks them with it.
#ifndef HEED_CONVERSION_HOPPERREGISTERS_H
#define HEED_CONVERSION_HOPPERREGISTERS_H

#include <cstdint>
#include <utility>

namespace heed {

/// The warp-specialized wgmma kernel's default producer budget (registers
/// per thread): FlashAttention-3's producer, which only issues TMA, takes
/// 24; heed's also classifies each key tile (to copy no EMPTY one), which
/// spills at 24 for document masks; 56 leaves two consumer warpgroups 224.
constexpr int64_t kHopperProducerRegisters = 56;

/// The registers per thread ptxas gives a block of `threads` at launch when
/// the kernel says `.maxntid threads` and `.minnctapersm 1`: 65536 / threads
/// in multiples of 8, at most 255.
int64_t hopperRegistersAtLaunch(int64_t threads);

/// The registers per thread (producer, consumer) a warp-specialized block of
/// `consumers` consumer warpgroups and one producer moves to (setmaxnreg):
/// the producer to `producer`, the consumers to what the block's 65536 then
/// leaves them (at most 240); (0, 0) where that would not raise the
/// consumers' budget (one consumer warpgroup: 248 at launch).
std::pair<int64_t, int64_t> hopperRegisterBudget(int64_t consumers, int64_t producer);

/// sm_90's dynamic shared memory per block (the opt-in maximum, 227 KB).
constexpr int64_t kHopperSharedPerBlock = 232448;

/// The wgmma kernel's dynamic shared memory: `rows` query rows of Q, `stages`
/// staging slots of `keys` K and V rows (16-bit elements), `barriers`
/// mbarriers, and one 1024-byte swizzle period (the base is aligned at run
/// time). A backward kernel's item holds two operand tiles (`backward`: K
/// and V rows, or Q and dO rows, headDim + valueDim wide) and its slots the
/// other two (Q and dO, or K and V).
constexpr int64_t hopperSharedBytes(int64_t rows, int64_t headDim, int64_t valueDim,
                                    int64_t keys, int64_t stages, int64_t barriers,
                                    bool backward = false) {
  return rows * (backward ? headDim + valueDim : headDim) * 2 +
         stages * keys * (headDim + valueDim) * 2 + 8 * barriers + 1024;
}

/// The K/V bytes of a section of (b, h) pairs that persistent workers walk
/// together (--attn-persistent-workers' l2-bytes): FlashAttention-3's 32
/// MiB, of the H100's and H200's 50 MB of L2.
constexpr int64_t kPersistentL2Bytes = 32 << 20;

/// The wgmma kernel's mbarriers: one per consumer warpgroup's Q rows (64
/// of the `rows`; a backward kernel's two operand tiles: two), then per
/// staging slot one (its fill), or three warp-specialized (its K, its V,
/// its release) and the producer's own (a ragged entry's last V tile).
constexpr int64_t hopperBarriers(int64_t rows, int64_t stages, bool specialized,
                                 bool backward = false) {
  return rows / 64 * (backward ? 2 : 1) + stages * (specialized ? 3 : 1) + (specialized ? 1 : 0);
}

} // namespace heed

#endif
