// Elaboration of spec expressions: name resolution, type checking, inlining
// of function calls, with the sizes of the resulting trees bounded.
#ifndef HEED_LIB_FRONTEND_ELABORATE_H
#define HEED_LIB_FRONTEND_ELABORATE_H

#include "AST.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

namespace heed::spec::detail {

/// What a name stands for during elaboration.
struct Binding {
  ExprPtr expr;     ///< a value
  int buffer = -1;  ///< or a buffer (position in the variant's buffer list)
  bool let = false; ///< a variant's let (may read `score`)
};
using Scope = llvm::StringMap<Binding>;

/// Facts about an elaborated tree, a shared subtree counted at each use.
struct TreeInfo {
  unsigned depth = 1;
  uint64_t size = 1;
  bool readsScore = false;
  bool varies = false; ///< reads an index, the score or a buffer
  bool readsToken = false; ///< reads q or kv
};

/// One argument of a call, from the source (`node`) or from callLibrary
/// (`expr` or `buffer`).
struct Actual {
  std::string keyword;
  llvm::SMLoc loc;
  const Node *node = nullptr;
  ExprPtr expr;
  int buffer = -1;
};

class Elaborator {
public:
  explicit Elaborator(llvm::ArrayRef<const Module *> modules) {
    for (const Module *m : modules)
      for (const auto &d : m->defs)
        defs.try_emplace(d->name, d.get());
  }

  /// The buffers of the variant being elaborated.
  const std::vector<BufferDecl> *buffers = nullptr;
  /// Names the variant declares after the statement being elaborated.
  const llvm::StringSet<> *declaredLater = nullptr;
  /// Messages for callLibrary(): "name: ..." instead of "in call to 'name': ...".
  bool libraryMode = false;
  std::optional<Failure> failure;
  llvm::StringMap<const Def *> defs;

  /// Elaborates `n` with the names in `scope`; `scoreAllowed` says whether
  /// `score` may be read (the score statement and the lets feeding it).
  ExprPtr elaborate(const Node &n, const Scope &scope, bool scoreAllowed);

  /// Binds `args` to the parameters of `d` and inlines its body. `site` is the
  /// call (invalid for callLibrary, whose argument errors name the function).
  ExprPtr callDef(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                  const Scope &scope, bool scoreAllowed);

  TreeInfo info(const ExprPtr &e);

  ExprPtr fail(llvm::SMLoc loc, std::string msg, std::vector<llvm::SMRange> ranges = {});

private:
  struct Frame {
    const Def *def;
    llvm::SMLoc site;
  };
  struct DepthGuard {
    explicit DepthGuard(unsigned &d) : d(d) { ++d; }
    ~DepthGuard() { --d; }
    unsigned &d;
  };

  ExprPtr elaborateNode(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr name(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr call(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr index(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr unary(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr binary(const Node &n, const Scope &scope, bool scoreAllowed);
  ExprPtr ternary(const Node &n, const Scope &scope, bool scoreAllowed);
  bool bindArgs(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                const Scope &scope, bool scoreAllowed, std::vector<Binding> &bound);
  /// `e`, or null after an error at `loc` if it is too deep or too large.
  ExprPtr checkTree(ExprPtr e, llvm::SMLoc loc);

  std::vector<Frame> frames;
  unsigned depth = 0;
  llvm::DenseMap<const Expr *, TreeInfo> infos;
  std::vector<ExprPtr> measured; ///< keeps the keys of `infos` alive
};


} // namespace heed::spec::detail

#endif // HEED_LIB_FRONTEND_ELABORATE_H
