// The patterns every target shares (lib/Conversion/TileCommon): the tile
// ops that lower to the same scalar code everywhere.
#ifndef HEED_LIB_CONVERSION_TILECOMMON_PATTERNS_H
#define HEED_LIB_CONVERSION_TILECOMMON_PATTERNS_H

#include "mlir/Transforms/DialectConversion.h"

namespace heed {

/// attn.tile.classify (the blocks region, scalar), attn.tile.kv_range (two
/// binary searches on the classifier), attn.tile.route (the route region,
/// scalar), attn.tile.count (the statistics) and attn.num_tiles (the
/// tiling arithmetic).
void populateTileCommonPatterns(const mlir::TypeConverter &converter,
                                mlir::RewritePatternSet &patterns);

} // namespace heed

#endif
