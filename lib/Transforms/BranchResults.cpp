// addBranchResults (heed/Transforms/BranchResults.h).
#include "heed/Transforms/BranchResults.h"

#include "mlir/IR/Builders.h"

using namespace mlir;

scf::IfOp heed::addBranchResults(scf::IfOp branch, ValueRange thenValues,
                                 ValueRange elseValues) {
  assert(thenValues.size() == elseValues.size() && "one value per side and result");
  OpBuilder b(branch);
  SmallVector<Type> types(branch.getResultTypes());
  for (Value v : thenValues)
    types.push_back(v.getType());
  auto grown = scf::IfOp::create(b, branch.getLoc(), types, branch.getCondition(),
                                 /*addThenBlock=*/false, /*addElseBlock=*/false);
  grown->setDiscardableAttrs(branch->getDiscardableAttrDictionary());
  grown.getThenRegion().takeBody(branch.getThenRegion());
  if (branch.getElseRegion().empty()) {
    Block *block = b.createBlock(&grown.getElseRegion());
    OpBuilder yb = OpBuilder::atBlockEnd(block);
    scf::YieldOp::create(yb, branch.getLoc());
  } else {
    grown.getElseRegion().takeBody(branch.getElseRegion());
  }
  for (auto [block, values] : {std::pair(grown.thenBlock(), thenValues),
                               std::pair(grown.elseBlock(), elseValues)})
    cast<scf::YieldOp>(block->getTerminator()).getResultsMutable().append(values);
  branch.replaceAllUsesWith(grown.getResults().take_front(branch.getNumResults()));
  branch.erase();
  return grown;
}
