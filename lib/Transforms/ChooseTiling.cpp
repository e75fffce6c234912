// --attn-choose-tiling: how each attention op (forward or backward) cuts
// the query and key sequences into tiles, recorded as `#attn.tiling` on the
// op (and on the `attn.num_tiles` ops of its variant).
//
// Flat tiles of `block-q` queries and `block-kv` keys by default. Where the
// variant's mask reads q and kv only through floor divisions and remainders
// by constants that form a chain of strides s_0 > s_1 > ... (each dividing
// the one before) -- a 2-D or 3-D token grid, as the neighborhood masks do --
// tiles become patches of that grid: the pass records the grid on the
// variant (`#attn.grid`, so that --attn-analyze-mask classifies grid boxes)
// and chooses a patch shape of block-q / block-kv lanes per tile. Gated
// variants keep flat tiles: their query tiles are routed rows.
#include "heed/Transforms/Passes.h"

#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"

#include <functional>
#include <optional>
#include <set>

namespace heed {
#define GEN_PASS_DEF_ATTNCHOOSETILING
#include "heed/Transforms/Passes.h.inc"
} // namespace heed

using namespace mlir;
using heed::attn::VariantOp;

namespace {

/// Grid strides, and their products, are at most 2^16 tokens. A larger
/// divisor (q % 2^62, say) is no grid: patches of its rows would make
/// billions of tiles, and products of such strides overflow.
constexpr int64_t kMaxGridStride = int64_t(1) << 16;

/// Query rows by schedule (block-q = 0). Flat prefill tiles of 32 rows keep
/// two 16-lane vectors of f32 scores per key in flight (measured on a
/// 2-core AVX-512 machine: causal f32 D=64 +8-15% over 16 rows, bf16 D=128
/// +9%); patches of 16 lanes waste fewer lanes past a neighborhood's edges
/// (2-D 17x17 on 64x128: 32 lanes are 11% slower).
constexpr int64_t kFlatRows = 32;
constexpr int64_t kPatchLanes = 16;

/// A constant that can be a grid stride: in (1, kMaxGridStride].
std::optional<int64_t> constantAbove1(Value c) {
  APInt value;
  if (matchPattern(c, m_ConstantInt(&value)) && value.getSExtValue() > 1 &&
      value.getSExtValue() <= kMaxGridStride)
    return value.getSExtValue();
  return std::nullopt;
}

/// Dilation: a grid coordinate `v` = (t mod hi) floordiv lo (hi = 0: no
/// remainder) that the mask reads both as v floordiv c and v mod c splits
/// into two digits, with strides lo * c and lo (the residue), recorded in
/// `splits` as (lo * c, lo). (Soundness is the interpretation's business:
/// this only shapes the patches.)
void dilationSplits(Value v, int64_t hi, int64_t lo,
                    std::set<std::pair<int64_t, int64_t>> &splits, int depth = 0) {
  if (depth > 3)
    return;
  std::set<int64_t> divided, reduced;
  for (Operation *user : v.getUsers()) {
    if (isa<arith::IndexCastOp, arith::ExtSIOp>(user)) {
      dilationSplits(user->getResult(0), hi, lo, splits, depth);
      continue;
    }
    if (auto div = dyn_cast<arith::FloorDivSIOp>(user); div && div.getLhs() == v) {
      if (std::optional<int64_t> c = constantAbove1(div.getRhs());
          c && lo <= kMaxGridStride / *c) {
        divided.insert(*c);
        // Deeper axes: (t mod hi) floordiv (lo * c).
        dilationSplits(div.getResult(), hi, lo * *c, splits, depth + 1);
      }
      continue;
    }
    auto sub = dyn_cast<arith::SubIOp>(user);
    auto mul = sub ? sub.getRhs().getDefiningOp<arith::MulIOp>() : nullptr;
    auto div = mul ? mul.getLhs().getDefiningOp<arith::FloorDivSIOp>() : nullptr;
    std::optional<int64_t> c = mul ? constantAbove1(mul.getRhs()) : std::nullopt;
    if (sub && sub.getLhs() == v && div && div.getLhs() == v && c &&
        c == constantAbove1(div.getRhs()) && lo <= kMaxGridStride / *c) {
      reduced.insert(*c);
      // (t mod (lo * c)) floordiv lo.
      dilationSplits(sub.getResult(), lo * *c, lo, splits, depth + 1);
    }
  }
  for (int64_t c : divided)
    if (reduced.count(c) && (hi == 0 || hi % (lo * c) == 0))
      splits.insert({lo * c, lo});
}

/// Collects the constants `v` is floor-divided by (`divisors`) or reduced
/// modulo (`moduli`), through index casts and sign extensions; false if `v`
/// has any other use. The quotients and remainders are searched for
/// dilation splits.
bool gridDivisors(Value v, std::set<int64_t> &divisors, std::set<int64_t> &moduli,
                  std::set<std::pair<int64_t, int64_t>> &splits) {
  auto constantOf = constantAbove1;
  for (Operation *user : v.getUsers()) {
    if (isa<arith::IndexCastOp, arith::ExtSIOp>(user)) {
      if (!gridDivisors(user->getResult(0), divisors, moduli, splits))
        return false;
      continue;
    }
    if (auto div = dyn_cast<arith::FloorDivSIOp>(user); div && div.getLhs() == v) {
      std::optional<int64_t> c = constantOf(div.getRhs());
      if (!c)
        return false;
      divisors.insert(*c);
      dilationSplits(div.getResult(), 0, *c, splits);
      continue;
    }
    // The remainder v - floordiv(v, c) * c.
    auto sub = dyn_cast<arith::SubIOp>(user);
    auto mul = sub ? sub.getRhs().getDefiningOp<arith::MulIOp>() : nullptr;
    auto div = mul ? mul.getLhs().getDefiningOp<arith::FloorDivSIOp>() : nullptr;
    if (!sub || sub.getLhs() != v || !div || div.getLhs() != v ||
        constantOf(mul.getRhs()) != constantOf(div.getRhs()) || !constantOf(mul.getRhs()))
      return false;
    moduli.insert(*constantOf(mul.getRhs()));
    dilationSplits(sub.getResult(), *constantOf(mul.getRhs()), 1, splits);
  }
  return true;
}

/// The token grid q and kv are read through: strides s_0 > ... > s_{n-1} = 1
/// (none if the mask reads q or kv some other way), and which digits are
/// dilation residues (patches keep one residue: NATTEN's dilation groups).
struct Grid {
  SmallVector<int64_t> strides;
  SmallVector<bool> residue;
};

Grid detectGrid(Block &mask) {
  std::set<int64_t> divisors, moduli;
  std::set<std::pair<int64_t, int64_t>> splits;
  if (!gridDivisors(mask.getArgument(2), divisors, moduli, splits) ||
      !gridDivisors(mask.getArgument(3), divisors, moduli, splits) ||
      divisors.empty() || moduli.empty())
    return {};
  // The outermost digit (a row) and the innermost one (a column) are both
  // read; quotients alone are blocks of a 1-D sequence (block_sparse).
  if (*divisors.rbegin() < *moduli.rbegin() || *moduli.begin() > *divisors.begin())
    return {};
  divisors.insert(moduli.begin(), moduli.end());
  auto chain = [](const std::set<int64_t> &set) {
    SmallVector<int64_t> strides(set.rbegin(), set.rend());
    for (size_t k = 1; k < strides.size(); ++k)
      if (strides[k - 1] % strides[k] != 0)
        return SmallVector<int64_t>();
    strides.push_back(1);
    return strides;
  };
  SmallVector<int64_t> grid = chain(divisors);
  if (grid.empty() || grid.size() > 3) // up to 3-D grids
    return {};
  // A split whose outer stride the token is divided by directly is the
  // grid's own (t floordiv s1 mod (s0 / s1): a middle axis), not a dilation.
  std::set<int64_t> withSplits = divisors, residues;
  for (auto [outer, inner] : splits)
    if (!divisors.count(outer)) {
      withSplits.insert(outer);
      residues.insert(inner);
    }
  withSplits.erase(1);
  Grid result;
  result.strides = grid;
  if (SmallVector<int64_t> split = chain(withSplits); !split.empty() && split.size() <= 6)
    result.strides = split;
  else
    residues.clear();
  for (int64_t s : result.strides)
    result.residue.push_back(residues.count(s) && s != result.strides.front());
  return result;
}

/// A patch of `count` tokens on a grid with inner extents `extents`: the
/// factorization of `count` with the least (lanes past the grid's edges)^2 x
/// (sum of the sides, which the number of tiles a window touches grows
/// with); ties go to the widest innermost side. (count, 1, ...) is a flat
/// tile of whole rows, so a grid that gains nothing keeps flat tiles' cost.
/// Residue digits of a dilation get side 1.
SmallVector<int64_t> choosePatch(int64_t count, ArrayRef<int64_t> extents,
                                 ArrayRef<bool> residue) {
  size_t dims = extents.size() + 1;
  SmallVector<int64_t> best, current(dims, 1);
  double bestCost = 0;
  std::function<void(size_t, int64_t)> search = [&](size_t k, int64_t left) {
    if (k + 1 == dims) {
      current[k] = left;
      if (left > extents[k - 1] || (residue[k] && left != 1))
        return;
      double waste = 1;
      int64_t sides = 0;
      for (size_t m = 0; m < dims; ++m) {
        sides += current[m];
        if (m > 0)
          waste *= double((extents[m - 1] + current[m] - 1) / current[m] * current[m]) /
                   double(extents[m - 1]);
      }
      // Wasted lanes cost in both the query and the key tiles.
      double cost = waste * waste * double(sides);
      if (best.empty() || cost < bestCost - 1e-9 ||
          (cost < bestCost + 1e-9 && current.back() > best.back())) {
        best = current;
        bestCost = cost;
      }
      return;
    }
    for (int64_t f = 1; f <= (residue[k] ? 1 : left); ++f)
      if (left % f == 0 && (k == 0 || f <= extents[k - 1])) {
        current[k] = f;
        search(k + 1, left / f);
      }
  };
  search(0, count);
  return best;
}


struct AttnChooseTilingPass : heed::impl::AttnChooseTilingBase<AttnChooseTilingPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (blockQ < 0 || blockKV < 0 || blockQ > 4096 || blockKV > 4096) {
      module.emitError() << "attn-choose-tiling: block-q must be in [0, 4096] (0: by schedule) "
                            "and block-kv in [0, 4096] (0: by head dim)";
      return signalPassFailure();
    }
    MLIRContext *ctx = module.getContext();
    // Keys per tile by head dim (block-kv = 0): the widest head dim of the
    // attention ops using a variant.
    llvm::DenseMap<Operation *, int64_t> widest;
    SymbolTableCollection lookups;
    module.walk([&](heed::attn::AttentionOp op) {
      if (auto v = lookups.lookupNearestSymbolFrom<VariantOp>(op, op.getVariantAttr())) {
        int64_t d = std::max(cast<MemRefType>(op.getQuery().getType()).getDimSize(3),
                             cast<MemRefType>(op.getValue().getType()).getDimSize(3));
        widest[v] = std::max(widest.lookup(v), d);
      }
    });
    llvm::DenseMap<Operation *, heed::attn::TilingAttr> chosen;
    module.walk([&](VariantOp variant) {
      int64_t blockKV = this->blockKV ? int64_t(this->blockKV) : widest.lookup(variant) <= 64 ? 64 : 32;
      variant.removeGridAttr();
      Grid grid;
      if (patches && !variant.isGated())
        grid = detectGrid(variant.getMask().front());
      if (grid.strides.empty()) {
        chosen[variant] =
            heed::attn::TilingAttr::getFlat(ctx, blockQ ? int64_t(blockQ) : kFlatRows, blockKV);
        return;
      }
      SmallVector<int64_t> extents, residues;
      for (size_t k = 1; k < grid.strides.size(); ++k) {
        extents.push_back(grid.strides[k - 1] / grid.strides[k]);
        if (grid.residue[k])
          residues.push_back(k);
      }
      variant.setGridAttr(heed::attn::GridAttr::get(ctx, extents, residues));
      chosen[variant] = heed::attn::TilingAttr::get(
          ctx, choosePatch(blockQ ? int64_t(blockQ) : kPatchLanes, extents, grid.residue),
          choosePatch(blockKV, extents, grid.residue), extents);
    });
    SymbolTableCollection symbols;
    auto tilingOf = [&](Operation *user, FlatSymbolRefAttr name) -> heed::attn::TilingAttr {
      auto variant = symbols.lookupNearestSymbolFrom<VariantOp>(user, name);
      return variant ? chosen.lookup(variant) : heed::attn::TilingAttr();
    };
    WalkResult result = module.walk([&](Operation *op) {
      FlatSymbolRefAttr name;
      if (auto attention = dyn_cast<heed::attn::AttentionOp>(op))
        name = attention.getVariantAttr();
      else if (auto backward = dyn_cast<heed::attn::AttentionBackwardOp>(op))
        name = backward.getVariantAttr();
      else if (auto count = dyn_cast<heed::attn::NumTilesOp>(op))
        name = count.getVariantAttr();
      else
        return WalkResult::advance();
      heed::attn::TilingAttr t = tilingOf(op, name);
      if (!t) {
        op->emitOpError() << "refers to an unknown variant " << name;
        return WalkResult::interrupt();
      }
      if (auto attention = dyn_cast<heed::attn::AttentionOp>(op))
        attention.setTilingAttr(t);
      else if (auto backward = dyn_cast<heed::attn::AttentionBackwardOp>(op))
        backward.setTilingAttr(t);
      else
        cast<heed::attn::NumTilesOp>(op).setTilingAttr(t);
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
