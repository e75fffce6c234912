// See KeyRows.h.
#include "KeyRows.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;

namespace heed {

int64_t pageSizeOf(Value cache, attn::Layout layout) {
  return cast<MemRefType>(cache.getType()).getDimSize(layout == attn::Layout::BSHD ? 1 : 2);
}

Value lookupPage(OpBuilder &b, Location loc, Value table, Value batch, Value slot) {
  Value page = memref::LoadOp::create(b, loc, table, ValueRange{batch, slot});
  return arith::IndexCastUIOp::create(b, loc, b.getIndexType(), page);
}

std::pair<Value, Value> keyRow(OpBuilder &b, Location loc, Value table, int64_t pageSize,
                               Value batch, Value token, Value page) {
  if (!table)
    return {batch, token};
  Value size = arith::ConstantIndexOp::create(b, loc, pageSize);
  if (!page)
    page = lookupPage(b, loc, table, batch, arith::DivUIOp::create(b, loc, token, size));
  return {page, arith::RemUIOp::create(b, loc, token, size)};
}

Value tilePage(OpBuilder &b, Location loc, Value table, int64_t pageSize, int64_t rows,
               Value batch, Value row0) {
  if (!table || rows <= 0 || pageSize % rows != 0)
    return {};
  Value size = arith::ConstantIndexOp::create(b, loc, pageSize);
  return lookupPage(b, loc, table, batch, arith::DivUIOp::create(b, loc, row0, size));
}

} // namespace heed
