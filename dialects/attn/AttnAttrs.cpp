// The attn dialect's attributes: registration and verifiers.
#include "dialects/attn/AttnAttrs.h"
#include "dialects/attn/AttnDialect.h"
#include "dialects/attn/TileMath.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace heed::attn;

#include "dialects/attn/AttnEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/attn/AttnAttrs.cpp.inc"

void AttnDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/attn/AttnAttrs.cpp.inc"
      >();
}

LogicalResult GridAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               ArrayRef<int64_t> extents, ArrayRef<int64_t> residues) {
  if (extents.empty() || extents.size() > 5)
    return emitError() << "a grid has 1 to 5 inner extents, got " << extents.size();
  for (int64_t e : extents)
    if (e < 1 || e > (int64_t(1) << 30))
      return emitError() << "grid extents must be in [1, 2^30], got " << e;
  for (int64_t r : residues)
    if (r < 1 || r > int64_t(extents.size()))
      return emitError() << "a residue dim must be an inner dim in [1, " << extents.size()
                         << "], got " << r;
  return success();
}

SmallVector<int64_t> GridAttr::getStrides() const {
  ArrayRef<int64_t> extents = getExtents();
  SmallVector<int64_t> strides(extents.size() + 1, 1);
  for (size_t k = extents.size(); k > 0; --k)
    strides[k - 1] = strides[k] * extents[k - 1];
  return strides;
}

bool GridAttr::isResidue(unsigned k) const { return llvm::is_contained(getResidues(), k); }

LogicalResult TilingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                 ArrayRef<int64_t> q, ArrayRef<int64_t> kv,
                                 ArrayRef<int64_t> grid) {
  if (q.size() != grid.size() + 1 || kv.size() != grid.size() + 1)
    return emitError() << "each side's patch needs one side per grid dim (" << grid.size() + 1
                       << "), got " << q.size() << " and " << kv.size();
  for (ArrayRef<int64_t> sides : {q, kv})
    for (int64_t s : sides)
      if (s < 1 || s > 4096)
        return emitError() << "tile sides must be in [1, 4096], got " << s;
  for (auto [k, e] : llvm::enumerate(grid))
    if (e < 1 || q[k + 1] > e || kv[k + 1] > e)
      return emitError() << "a patch side cannot exceed its grid extent " << e;
  return success();
}

int64_t TilingAttr::getTileSize(Side side) const { return tileSize(getPatch(side)); }

TilingAttr TilingAttr::getFlat(MLIRContext *ctx, int64_t q, int64_t kv) {
  return TilingAttr::get(ctx, {q}, {kv}, {});
}
