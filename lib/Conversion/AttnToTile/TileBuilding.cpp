// TileBuilder's helpers for entries of different lengths (kv_lens, q_lens,
// cu_seqlens), shared by the forward's and the backward's loops.
#include "TileBuilding.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"


using namespace mlir;

namespace heed::attn_to_tile {

Value TileBuilder::entryLength(Value lens, Value batch, Value capacity) {
  Value len = memref::LoadOp::create(b, loc, lens, ValueRange{batch});
  len = arith::MaxSIOp::create(b, loc, len, arith::ConstantIntOp::create(b, loc, 0, 32));
  len = arith::IndexCastUIOp::create(b, loc, b.getIndexType(), len);
  return arith::MinUIOp::create(b, loc, len, capacity);
}

std::pair<Value, Value> TileBuilder::packedEntry(Value cu, Value batch, Value capacity) {
  Value next = arith::AddIOp::create(b, loc, batch, idx(1));
  Value first = memref::LoadOp::create(b, loc, cu, ValueRange{batch});
  Value end = memref::LoadOp::create(b, loc, cu, ValueRange{next});
  Value zero = arith::ConstantIntOp::create(b, loc, 0, 32);
  first = arith::MaxSIOp::create(b, loc, first, zero);
  Value len = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, end, first), zero);
  len = arith::IndexCastUIOp::create(b, loc, b.getIndexType(), len);
  return {arith::IndexCastUIOp::create(b, loc, b.getIndexType(), first),
          arith::MinUIOp::create(b, loc, len, capacity)};
}

Value TileBuilder::rowsFrom(Value tensor, Value start, unsigned seqDim) {
  auto type = cast<MemRefType>(tensor.getType());
  auto meta = memref::ExtractStridedMetadataOp::create(b, loc, tensor);
  auto [staticStrides, staticOffset] = type.getStridesAndOffset();
  SmallVector<OpFoldResult> sizes, strides;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    sizes.push_back(type.isDynamicDim(d) ? OpFoldResult(meta.getSizes()[d])
                                         : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
    strides.push_back(ShapedType::isDynamic(staticStrides[d])
                          ? OpFoldResult(meta.getStrides()[d])
                          : OpFoldResult(b.getIndexAttr(staticStrides[d])));
  }
  Value stride = getValueOrCreateConstantIndexOp(b, loc, strides[seqDim]);
  Value offset = arith::AddIOp::create(b, loc, meta.getOffset(),
                                       arith::MulIOp::create(b, loc, start, stride));
  return memref::ReinterpretCastOp::create(b, loc, type, tensor, offset, sizes, strides);
}

TileBuilder::EntrySide TileBuilder::entrySide(Value lens, Value cu, Value batch, Value capacity) {
  if (lens)
    return {entryLength(lens, batch, capacity), Value()};
  if (!cu)
    return {capacity, Value()};
  auto [first, length] = packedEntry(cu, batch, capacity);
  return {length, first};
}

} // namespace heed::attn_to_tile
