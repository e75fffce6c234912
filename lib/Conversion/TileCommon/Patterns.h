// The patterns every target shares (lib/Conversion/TileCommon): the tile
// ops that lower to the same scalar code everywhere.
#ifndef HEED_LIB_CONVERSION_TILECOMMON_PATTERNS_H
#define HEED_LIB_CONVERSION_TILECOMMON_PATTERNS_H

#include "IndexExpr.h"

#include "dialects/attn/AttnTileOps.h"

#include "mlir/Transforms/DialectConversion.h"

namespace heed {

/// The grid digits of the first point of `span`'s tile (a flat tile: its
/// first token), from the converted coordinates: one coordinate is the
/// tile's number (dialects/attn/TileMath.h's tileOrigin), several are its
/// patch coordinates per grid dim.
llvm::SmallVector<IndexExpr> spanOrigin(attn::TileSpanOp span, IndexExpr seq,
                                        mlir::ValueRange coords);

/// attn.tile.classify (the blocks region, scalar), attn.tile.kv_range (two
/// binary searches on the classifier), attn.tile.route and attn.tile.sink
/// (the route and sink regions, scalar), attn.num_tiles (the tiling arithmetic) and, with `statistics`,
/// attn.tile.count (increments of the stats buffer; targets that keep no
/// statistics lower it themselves).
void populateTileCommonPatterns(const mlir::TypeConverter &converter,
                                mlir::RewritePatternSet &patterns, bool statistics = true);

} // namespace heed

#endif
