// Registration of the attn dialect.
#include "dialects/attn/AttnDialect.h"
#include "dialects/attn/AttnOps.h"
#include "dialects/attn/AttnTileOps.h"

using namespace mlir;
using namespace heed::attn;

#include "dialects/attn/AttnDialect.cpp.inc"

void AttnDialect::initialize() {
  registerAttributes();
  registerTypes();
  addOperations<
#define GET_OP_LIST
#include "dialects/attn/AttnOps.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/attn/AttnTileOps.cpp.inc"
      >();
}
