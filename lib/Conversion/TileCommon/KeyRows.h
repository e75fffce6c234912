// Where a key token's row lives in a K or V tensor, for every target: the
// batch entry's row of a contiguous tensor, or a page of a paged cache
// (vLLM's and FlashInfer's layout: page_table[b, t / P], slot t % P;
// docs/decode.md).
#ifndef HEED_LIB_CONVERSION_TILECOMMON_KEYROWS_H
#define HEED_LIB_CONVERSION_TILECOMMON_KEYROWS_H

#include "dialects/attn/AttnAttrs.h"

#include "mlir/IR/Builders.h"

#include <utility>

namespace heed {

/// The page size of a paged K/V cache: its static sequence dim (dim 1 in
/// bshd, 2 in bhsd).
int64_t pageSizeOf(mlir::Value cache, attn::Layout layout);

/// page_table[batch, slot] as an index (a negative entry becomes huge; the
/// runtime checks the entries a call reads).
mlir::Value lookupPage(mlir::OpBuilder &b, mlir::Location loc, mlir::Value table,
                       mlir::Value batch, mlir::Value slot);

/// (the outer index, the position) of key `token` of entry `batch`:
/// (batch, token) without a page table, else (page_table[batch, token / P],
/// token % P), or with `page` (that key's page, read already) (page, token
/// % P).
std::pair<mlir::Value, mlir::Value> keyRow(mlir::OpBuilder &b, mlir::Location loc,
                                           mlir::Value table, int64_t pageSize,
                                           mlir::Value batch, mlir::Value token,
                                           mlir::Value page = {});

/// The page of a tile of `rows` keys from `row0` (a multiple of `rows`) of
/// entry `batch`, read once, when pages hold whole tiles (pageSize a multiple
/// of rows); else null (each row reads its own).
mlir::Value tilePage(mlir::OpBuilder &b, mlir::Location loc, mlir::Value table,
                     int64_t pageSize, int64_t rows, mlir::Value batch, mlir::Value row0);

} // namespace heed

#endif
