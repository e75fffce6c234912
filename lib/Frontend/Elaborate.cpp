// Elaboration of spec expressions (Elaborate.h): names to values, buffers and
// functions; operators and built-ins type-checked through Spec.h's typed
// constructors; calls to functions inlined with their arguments bound.
#include "Elaborate.h"

#include <algorithm>

namespace heed::spec::detail {

ExprPtr Elaborator::fail(llvm::SMLoc loc, std::string msg, std::vector<llvm::SMRange> ranges) {
  if (failure)
    return nullptr;
  Failure f;
  // An error inside the library is reported at the user's outermost call into
  // it: the prelude's text is not the user's.
  auto lib = std::find_if(frames.begin(), frames.end(),
                          [](const Frame &fr) { return fr.def->fromPrelude; });
  if (lib != frames.end()) {
    f.loc = lib->site;
    f.message = (libraryMode ? lib->def->name + ": " : "in call to '" + lib->def->name + "': ") +
                msg;
  } else {
    f.loc = loc;
    f.message = std::move(msg);
    f.ranges = std::move(ranges);
  }
  for (auto it = std::make_reverse_iterator(lib); it != frames.rend(); ++it)
    f.notes.push_back({it->site, "in this call to '" + it->def->name + "'"});
  // Like a compiler's backtrace: the innermost calls and the outermost one.
  constexpr size_t kShownNotes = 6;
  if (f.notes.size() > kShownNotes) {
    size_t skipped = f.notes.size() - kShownNotes;
    Note outermost = f.notes.back();
    f.notes.resize(kShownNotes - 1);
    outermost.message += " (" + plural(skipped, "call") + " in between not shown)";
    f.notes.push_back(std::move(outermost));
  }
  failure = std::move(f);
  return nullptr;
}

TreeInfo Elaborator::info(const ExprPtr &root) {
  auto found = infos.find(root.get());
  if (found != infos.end())
    return found->second;
  // Iterative post-order: expressions from callLibrary may be arbitrarily deep.
  std::vector<std::pair<ExprPtr, bool>> stack = {{root, false}};
  while (!stack.empty()) {
    auto [e, childrenDone] = stack.back();
    stack.pop_back();
    if (infos.count(e.get()))
      continue;
    if (!childrenDone) {
      stack.emplace_back(e, true);
      for (const ExprPtr &o : e->operands)
        if (!infos.count(o.get()))
          stack.emplace_back(o, false);
      continue;
    }
    TreeInfo t;
    t.readsScore = e->kind == ExprKind::Score;
    t.varies = e->kind == ExprKind::Index || e->kind == ExprKind::Score ||
               e->kind == ExprKind::Load;
    t.readsToken = e->kind == ExprKind::Index &&
                   (e->index == IndexVar::Q || e->index == IndexVar::KV);
    for (const ExprPtr &o : e->operands) {
      const TreeInfo &c = infos.find(o.get())->second;
      t.depth = std::max(t.depth, c.depth + 1);
      t.size = std::min(t.size + c.size, kMaxTreeSize + 1);
      t.readsScore |= c.readsScore;
      t.varies |= c.varies;
      t.readsToken |= c.readsToken;
    }
    infos[e.get()] = t;
    measured.push_back(e);
  }
  return infos.find(root.get())->second;
}

ExprPtr Elaborator::checkTree(ExprPtr e, llvm::SMLoc loc) {
  if (!e)
    return nullptr;
  TreeInfo t = info(e);
  if (t.depth > kMaxTreeDepth)
    return fail(loc, "expression nested too deeply after inlining functions (more than " +
                         std::to_string(kMaxTreeDepth) + " levels)");
  if (t.size > kMaxTreeSize)
    return fail(loc, "expression too large after inlining functions (more than " +
                         std::to_string(kMaxTreeSize) + " nodes)");
  return e;
}

ExprPtr Elaborator::elaborate(const Node &n, const Scope &scope, bool scoreAllowed) {
  if (failure)
    return nullptr;
  DepthGuard guard(depth);
  if (depth > kMaxTreeDepth)
    return fail(n.loc, "expression nested too deeply after inlining functions (more than " +
                           std::to_string(kMaxTreeDepth) + " levels)");
  return checkTree(elaborateNode(n, scope, scoreAllowed), n.loc);
}

ExprPtr Elaborator::elaborateNode(const Node &n, const Scope &scope, bool scoreAllowed) {
  switch (n.kind) {
  case Node::Int:
    return makeInt(n.intValue);
  case Node::Float:
    return makeFloat(n.floatValue);
  case Node::Bool:
    return makeBool(n.intValue != 0);
  case Node::Name:
    return name(n, scope, scoreAllowed);
  case Node::Call:
    return call(n, scope, scoreAllowed);
  case Node::Index:
    return index(n, scope, scoreAllowed);
  case Node::Unary:
    return unary(n, scope, scoreAllowed);
  case Node::Binary:
    return binary(n, scope, scoreAllowed);
  case Node::Ternary:
    return ternary(n, scope, scoreAllowed);
  }
  return nullptr;
}

ExprPtr Elaborator::name(const Node &n, const Scope &scope, bool scoreAllowed) {
  auto it = scope.find(n.name);
  if (it != scope.end()) {
    const Binding &b = it->second;
    if (b.buffer >= 0)
      return fail(n.loc, "buffer '" + n.name + "' must be indexed, as in " + n.name + "[...]",
                  {n.range()});
    if (b.let && !scoreAllowed && info(b.expr).readsScore)
      return fail(n.loc, "'score' is only available in the score modifier (let '" + n.name +
                             "' reads it)",
                  {n.range()});
    return b.expr;
  }
  if (std::optional<IndexVar> v = indexVar(n.name))
    return makeIndex(*v);
  if (n.name == "score") {
    if (scoreAllowed)
      return makeScore();
    if (!frames.empty() && !frames.back().def->fromPrelude)
      return fail(n.loc, "function '" + frames.back().def->name +
                             "' cannot read 'score'; pass it as an f32 parameter",
                  {n.range()});
    return fail(n.loc, "'score' is only available in the score modifier", {n.range()});
  }
  if (defs.count(n.name) || isBuiltin(n.name))
    return fail(n.loc, "'" + n.name + "' is a function: call it as " + n.name + "(...)",
                {n.range()});
  if (declaredLater && declaredLater->contains(n.name))
    return fail(n.loc, "'" + n.name + "' is used before its declaration", {n.range()});
  std::vector<std::string> names;
  for (const auto &e : scope)
    if (e.getValue().buffer < 0)
      names.push_back(e.getKey().str());
  for (const char *v : {"q", "kv", "h", "b"})
    names.push_back(v);
  if (scoreAllowed)
    names.push_back("score");
  return fail(n.loc, "unknown name '" + n.name + "'" + didYouMean(n.name, names), {n.range()});
}

ExprPtr Elaborator::call(const Node &n, const Scope &scope, bool scoreAllowed) {
  if (isBuiltin(n.name)) {
    for (size_t i = 0; i < n.kids.size(); ++i)
      if (!n.argNames[i].empty())
        return fail(n.argLocs[i], "built-in function '" + n.name +
                                      "' takes no keyword arguments");
    std::vector<ExprPtr> args;
    for (const NodePtr &k : n.kids) {
      ExprPtr e = elaborate(*k, scope, scoreAllowed);
      if (!e)
        return nullptr;
      args.push_back(e);
    }
    std::string error;
    bool known = false;
    ExprPtr r = typedBuiltin(n.name, std::move(args), error, known);
    return r ? r : fail(n.loc, error, {n.range()});
  }
  auto it = defs.find(n.name);
  if (it == defs.end()) {
    auto bound = scope.find(n.name);
    if (bound != scope.end() && bound->second.buffer >= 0)
      return fail(n.loc, "'" + n.name + "' is a buffer: index it as " + n.name + "[...]",
                  {n.range()});
    if (bound != scope.end() || indexVar(n.name) || n.name == "score")
      return fail(n.loc, "'" + n.name + "' is not a function", {n.range()});
    std::vector<std::string> names = builtinNames();
    for (const auto &d : defs)
      names.push_back(d.getKey().str());
    return fail(n.loc, "unknown function '" + n.name + "'" + didYouMean(n.name, names),
                {llvm::SMRange(n.begin, llvm::SMLoc::getFromPointer(n.begin.getPointer() +
                                                                    n.name.size()))});
  }
  std::vector<Actual> args;
  for (size_t i = 0; i < n.kids.size(); ++i) {
    Actual a;
    a.keyword = n.argNames[i];
    a.loc = n.argLocs[i];
    a.node = n.kids[i].get();
    args.push_back(std::move(a));
  }
  return callDef(*it->second, args, n.loc, scope, scoreAllowed);
}

bool Elaborator::bindArgs(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                          const Scope &scope, bool scoreAllowed, std::vector<Binding> &bound) {
  // callLibrary has no source: its messages name the function instead.
  bool library = !site.isValid();
  auto callError = [&](llvm::SMLoc loc, const std::string &msg) {
    fail(loc, library ? d.name + ": " + msg : msg);
    return false;
  };
  auto argError = [&](llvm::SMLoc loc, const DefParam &p, const std::string &rest,
                      std::vector<llvm::SMRange> ranges = {}) {
    if (library)
      fail(loc, d.name + ": argument '" + p.name + "' " + rest);
    else
      fail(loc, "argument '" + p.name + "' of '" + d.name + "' " + rest, std::move(ranges));
    return false;
  };

  bound.assign(d.params.size(), Binding{});
  std::vector<bool> given(d.params.size(), false);
  size_t positional = 0;
  bool sawKeyword = false;
  for (const Actual &a : args) {
    size_t slot;
    if (a.keyword.empty()) {
      if (sawKeyword)
        return callError(a.loc, "positional argument after a keyword argument");
      if (positional >= d.params.size()) {
        size_t required = std::count_if(d.params.begin(), d.params.end(),
                                        [](const DefParam &p) { return !p.defaultValue; });
        std::string takes = required == d.params.size()
                                ? plural(d.params.size(), "argument")
                                : std::to_string(required) + " to " +
                                      plural(d.params.size(), "argument");
        return callError(a.loc, "'" + d.name + "' takes " + takes + ", got " +
                                    std::to_string(args.size()));
      }
      slot = positional++;
    } else {
      sawKeyword = true;
      auto it = std::find_if(d.params.begin(), d.params.end(),
                             [&](const DefParam &p) { return p.name == a.keyword; });
      if (it == d.params.end()) {
        std::vector<std::string> names;
        for (const DefParam &p : d.params)
          names.push_back(p.name);
        return callError(a.loc, "'" + d.name + "' has no parameter '" + a.keyword + "'" +
                                    didYouMean(a.keyword, names));
      }
      slot = it - d.params.begin();
    }
    const DefParam &p = d.params[slot];
    if (given[slot])
      return argError(a.loc, p, "is given twice");
    given[slot] = true;

    // The buffer an argument names, if it names one.
    int buffer = a.buffer;
    const Node *node = a.node;
    if (node && node->kind == Node::Name) {
      auto it = scope.find(node->name);
      if (it != scope.end())
        buffer = it->second.buffer;
    }
    if (p.kind == ParamKind::Buffer) {
      if (node && node->kind == Node::Name && !scope.count(node->name) &&
          !indexVar(node->name) && node->name != "score") {
        std::vector<std::string> names;
        for (const auto &e : scope)
          if (e.getValue().buffer >= 0)
            names.push_back(e.getKey().str());
        fail(node->loc, "unknown buffer '" + node->name + "'" + didYouMean(node->name, names),
             {node->range()});
        return false;
      }
      if (buffer < 0 || !buffers || static_cast<size_t>(buffer) >= buffers->size())
        return argError(node ? node->begin : a.loc, p, "must be a buffer",
                        node ? std::vector<llvm::SMRange>{node->range()}
                             : std::vector<llvm::SMRange>{});
      bound[slot].buffer = buffer;
      continue;
    }
    if (buffer >= 0)
      return argError(node ? node->begin : a.loc, p,
                      std::string("must be ") + toString(p.kind) + ", got a buffer",
                      node ? std::vector<llvm::SMRange>{node->range()}
                           : std::vector<llvm::SMRange>{});
    ExprPtr v = a.expr;
    if (node && !(v = elaborate(*node, scope, scoreAllowed)))
      return false;
    if (!v)
      return argError(a.loc, p, "has no value");
    ScalarType want = scalarOf(p.kind);
    if (want == ScalarType::F32 && v->type == ScalarType::I64)
      v = makeCast(ScalarType::F32, v);
    if (v->type != want)
      return argError(node ? node->begin : a.loc, p,
                      std::string("must be ") + toString(want) + ", got " + toString(v->type),
                      node ? std::vector<llvm::SMRange>{node->range()}
                           : std::vector<llvm::SMRange>{});
    bound[slot].expr = v;
  }
  for (size_t i = 0; i < d.params.size(); ++i) {
    if (given[i])
      continue;
    if (!d.params[i].defaultExpr)
      return callError(site, "missing argument '" + d.params[i].name + "' in call to '" +
                                 d.name + "'");
    bound[i].expr = d.params[i].defaultExpr;
  }
  return true;
}

ExprPtr Elaborator::callDef(const Def &d, llvm::ArrayRef<Actual> args, llvm::SMLoc site,
                            const Scope &scope, bool scoreAllowed) {
  std::vector<Binding> bound;
  if (!bindArgs(d, args, site, scope, scoreAllowed, bound))
    return nullptr;
  // A library function given a rank-2 buffer (per-batch ids, doc[b, t])
  // takes its `_batched` form where the library has one: document(doc).
  if (d.fromPrelude && buffers)
    for (auto [p, arg] : llvm::zip(d.params, bound))
      if (p.kind == ParamKind::Buffer && arg.buffer >= 0 &&
          (*buffers)[size_t(arg.buffer)].shape.size() == 2) {
        auto alt = defs.find(d.name + "_batched");
        if (alt != defs.end() && alt->second->fromPrelude && alt->second != &d)
          return callDef(*alt->second, args, site, scope, scoreAllowed);
      }
  // Recursion is rejected before elaboration (checkDefs); this is a safeguard.
  for (const Frame &f : frames)
    if (f.def == &d)
      return fail(site, "'" + d.name + "' calls itself (recursion is not allowed)");
  if (frames.size() >= kMaxInlineDepth)
    return fail(site, "calls nested too deeply (more than " + std::to_string(kMaxInlineDepth) +
                          " functions inlined inside one another)");
  Scope body;
  for (size_t i = 0; i < d.params.size(); ++i)
    body[d.params[i].name] = bound[i];
  frames.push_back({&d, site});
  ExprPtr r = elaborate(*d.body, body, /*scoreAllowed=*/false);
  frames.pop_back();
  return r;
}

ExprPtr Elaborator::index(const Node &n, const Scope &scope, bool scoreAllowed) {
  auto it = scope.find(n.name);
  llvm::SMRange nameRange(n.begin,
                          llvm::SMLoc::getFromPointer(n.begin.getPointer() + n.name.size()));
  if (it == scope.end() || it->second.buffer < 0) {
    if (it != scope.end() || indexVar(n.name) || n.name == "score")
      return fail(n.loc, "'" + n.name + "' is not a buffer and cannot be indexed", {nameRange});
    std::vector<std::string> names;
    for (const auto &e : scope)
      if (e.getValue().buffer >= 0)
        names.push_back(e.getKey().str());
    return fail(n.loc, "unknown buffer '" + n.name + "'" + didYouMean(n.name, names),
                {nameRange});
  }
  const BufferDecl &buf = (*buffers)[it->second.buffer];
  if (n.kids.size() != buf.shape.size())
    return fail(n.loc,
                "buffer '" + buf.name + "' has rank " + std::to_string(buf.shape.size()) +
                    " but is indexed with " + std::to_string(n.kids.size()) + " index" +
                    (n.kids.size() == 1 ? "" : "es"),
                {n.range()});
  std::vector<ExprPtr> indices;
  for (const NodePtr &k : n.kids) {
    ExprPtr i = elaborate(*k, scope, scoreAllowed);
    if (!i)
      return nullptr;
    if (i->type != ScalarType::I64)
      return fail(k->begin, std::string("buffer indices must be i64, got ") + toString(i->type),
                  {k->range()});
    if (std::string err = constantIndexError(buf, indices.size(), *i); !err.empty())
      return fail(k->begin, err, {k->range()});
    indices.push_back(i);
  }
  return makeLoad(it->second.buffer, loadType(buf.elem), std::move(indices));
}

ExprPtr Elaborator::unary(const Node &n, const Scope &scope, bool scoreAllowed) {
  ExprPtr a = elaborate(*n.kids[0], scope, scoreAllowed);
  if (!a)
    return nullptr;
  std::string error;
  ExprPtr r = typedUnary(n.op == Tok::Bang ? Op::Not : Op::Neg, a, error);
  return r ? r : fail(n.loc, error, {n.kids[0]->range()});
}

ExprPtr Elaborator::binary(const Node &n, const Scope &scope, bool scoreAllowed) {
  ExprPtr a = elaborate(*n.kids[0], scope, scoreAllowed);
  if (!a)
    return nullptr;
  ExprPtr b = elaborate(*n.kids[1], scope, scoreAllowed);
  if (!b)
    return nullptr;
  Op op = Op::None;
  switch (n.op) {
  case Tok::OrOr: op = Op::Or; break;
  case Tok::AndAnd: op = Op::And; break;
  case Tok::EqEq: op = Op::Eq; break;
  case Tok::Ne: op = Op::Ne; break;
  case Tok::Lt: op = Op::Lt; break;
  case Tok::Le: op = Op::Le; break;
  case Tok::Gt: op = Op::Gt; break;
  case Tok::Ge: op = Op::Ge; break;
  case Tok::Plus: op = Op::Add; break;
  case Tok::Minus: op = Op::Sub; break;
  case Tok::Star: op = Op::Mul; break;
  case Tok::Slash: op = Op::Div; break;
  case Tok::Percent: op = Op::Rem; break;
  default: return fail(n.loc, std::string("unsupported operator ") + describe(n.op));
  }
  std::vector<llvm::SMRange> ranges = {n.kids[0]->range(), n.kids[1]->range()};
  std::string error;
  ExprPtr r = typedBinary(op, a, b, error);
  if (!r)
    return fail(n.loc, error, ranges);
  // A remainder by zero would silently be 0 (as x / 0 is rejected by typedBinary).
  const Expr &rhs = *r->operands[1];
  if (op == Op::Rem && rhs.kind == ExprKind::Const && rhs.intValue == 0)
    return fail(n.loc, "integer remainder by zero", ranges);
  return r;
}

ExprPtr Elaborator::ternary(const Node &n, const Scope &scope, bool scoreAllowed) {
  ExprPtr c = elaborate(*n.kids[0], scope, scoreAllowed);
  if (!c)
    return nullptr;
  if (c->type != ScalarType::Bool)
    return fail(n.kids[0]->begin,
                std::string("the condition of '?:' must be bool, got ") + toString(c->type),
                {n.kids[0]->range()});
  ExprPtr a = elaborate(*n.kids[1], scope, scoreAllowed);
  if (!a)
    return nullptr;
  ExprPtr b = elaborate(*n.kids[2], scope, scoreAllowed);
  if (!b)
    return nullptr;
  std::string error;
  ExprPtr r = typedSelect(c, a, b, error);
  return r ? r : fail(n.loc, "in '?:', " + error, {n.kids[1]->range(), n.kids[2]->range()});
}

} // namespace heed::spec::detail
