// Checks of a file's definitions before any variant is elaborated: names,
// parameters and their defaults, names in bodies, recursion.
#include "Elaborate.h"

#include <algorithm>
#include <functional>

namespace heed::spec::detail {
namespace {

/// Resolves the names in the body of `d` without elaborating it, so that a
/// typo in a function that no variant calls is still reported. Types are
/// checked where the function is called (a buffer's rank and element type come
/// from the caller).
void resolveBody(const Node &n, const Def &d, const llvm::StringMap<const Def *> &defs,
                 Elaborator &el, std::vector<std::pair<const Def *, const Node *>> &calls) {
  if (el.failure)
    return;
  auto param = [&](llvm::StringRef name) -> const DefParam * {
    for (const DefParam &p : d.params)
      if (p.name == name)
        return &p;
    return nullptr;
  };
  auto names = [&] {
    std::vector<std::string> out;
    for (const DefParam &p : d.params)
      if (p.kind != ParamKind::Buffer)
        out.push_back(p.name);
    for (const char *v : {"q", "kv", "h", "b"})
      out.push_back(v);
    return out;
  };
  switch (n.kind) {
  case Node::Name:
    if (const DefParam *p = param(n.name)) {
      if (p->kind == ParamKind::Buffer)
        el.fail(n.loc, "buffer '" + n.name + "' must be indexed, as in " + n.name + "[...]",
                {n.range()});
    } else if (n.name == "score") {
      el.fail(n.loc, "function '" + d.name + "' cannot read 'score'; pass it as an f32 parameter",
              {n.range()});
    } else if (defs.count(n.name) || isBuiltin(n.name)) {
      el.fail(n.loc, "'" + n.name + "' is a function: call it as " + n.name + "(...)",
              {n.range()});
    } else if (!indexVar(n.name)) {
      el.fail(n.loc, "unknown name '" + n.name + "'" + didYouMean(n.name, names()),
              {n.range()});
    }
    break;
  case Node::Call:
    if (!isBuiltin(n.name)) {
      auto it = defs.find(n.name);
      if (it != defs.end()) {
        calls.emplace_back(it->second, &n);
      } else if (param(n.name) || indexVar(n.name) || n.name == "score") {
        el.fail(n.loc, "'" + n.name + "' is not a function", {n.range()});
      } else {
        std::vector<std::string> fns = builtinNames();
        for (const auto &e : defs)
          fns.push_back(e.getKey().str());
        el.fail(n.loc, "unknown function '" + n.name + "'" + didYouMean(n.name, fns));
      }
    }
    break;
  case Node::Index: {
    const DefParam *p = param(n.name);
    if (!p && !indexVar(n.name) && n.name != "score")
      el.fail(n.loc, "unknown buffer '" + n.name + "'");
    else if (!p || p->kind != ParamKind::Buffer)
      el.fail(n.loc, "'" + n.name + "' is not a buffer and cannot be indexed");
    break;
  }
  default:
    break;
  }
  for (const NodePtr &k : n.kids) {
    // A buffer passed on to a function is fine; the call checks the parameter.
    const DefParam *p = k->kind == Node::Name ? param(k->name) : nullptr;
    if (n.kind == Node::Call && p && p->kind == ParamKind::Buffer)
      continue;
    resolveBody(*k, d, defs, el, calls);
  }
}


} // namespace

/// Checks the definitions of `m` (with `others` visible, e.g. the prelude):
/// names, parameters and their defaults, the names in bodies, recursion.
std::optional<Failure> checkDefs(Module &m, const Module *others) {
  Elaborator el(others ? std::vector<const Module *>{others, &m}
                       : std::vector<const Module *>{&m});
  llvm::StringMap<const Def *> seen;
  for (const auto &d : m.defs) {
    if (isReserved(d->name))
      return Failure{d->loc, "'" + d->name + "' is a reserved word and cannot name a function"};
    if (isBuiltin(d->name))
      return Failure{d->loc, "'" + d->name + "' is a built-in function and cannot be redefined"};
    if (others && std::any_of(others->defs.begin(), others->defs.end(),
                              [&](const auto &p) { return p->name == d->name; }))
      return Failure{d->loc, "'" + d->name + "' is already defined by the library"};
    auto [it, inserted] = seen.try_emplace(d->name, d.get());
    if (!inserted)
      return Failure{d->loc, "function '" + d->name + "' is defined twice", {},
                     {{it->second->loc, "first defined here"}}};
    llvm::StringMap<llvm::SMLoc> params;
    for (DefParam &p : d->params) {
      if (isReserved(p.name))
        return Failure{p.loc, "'" + p.name + "' is a reserved word and cannot name a parameter"};
      auto [pit, fresh] = params.try_emplace(p.name, p.loc);
      if (!fresh)
        return Failure{p.loc, "parameter '" + p.name + "' is declared twice", {},
                       {{pit->second, "first declared here"}}};
      if (!p.defaultValue)
        continue;
      ExprPtr v = el.elaborate(*p.defaultValue, {}, /*scoreAllowed=*/false);
      if (!v)
        return el.failure;
      if (el.info(v).varies)
        return Failure{p.defaultValue->begin,
                       "the default of parameter '" + p.name + "' must be a constant",
                       {p.defaultValue->range()}};
      ScalarType want = scalarOf(p.kind);
      if (want == ScalarType::F32 && v->type == ScalarType::I64)
        v = makeCast(ScalarType::F32, v);
      if (v->type != want)
        return Failure{p.defaultValue->begin,
                       "the default of parameter '" + p.name + "' must be " + toString(want) +
                           ", got " + toString(v->type),
                       {p.defaultValue->range()}};
      p.defaultExpr = v;
    }
  }

  // Names in bodies, and the call graph for the recursion check.
  llvm::DenseMap<const Def *, std::vector<std::pair<const Def *, const Node *>>> graph;
  for (const auto &d : m.defs) {
    resolveBody(*d->body, *d, el.defs, el, graph[d.get()]);
    if (el.failure)
      return el.failure;
  }
  // Depth-first search for a cycle; 0 unvisited, 1 on the path, 2 done.
  llvm::DenseMap<const Def *, int> state;
  std::vector<const Def *> path;
  std::optional<Failure> cycle;
  std::function<void(const Def *)> visit = [&](const Def *d) {
    state[d] = 1;
    path.push_back(d);
    for (const auto &[callee, node] : graph[d]) {
      if (cycle)
        break;
      if (state[callee] == 1) {
        std::string chain;
        auto from = std::find(path.begin(), path.end(), callee);
        for (auto it = from; it != path.end(); ++it)
          chain += "'" + (*it)->name + "' -> ";
        chain += "'" + callee->name + "'";
        cycle = Failure{node->loc,
                        callee == d ? "'" + d->name + "' calls itself (recursion is not allowed)"
                                    : "recursive calls " + chain + " (recursion is not allowed)",
                        {}};
      } else if (state[callee] == 0) {
        visit(callee);
      }
    }
    path.pop_back();
    state[d] = 2;
  };
  for (const auto &d : m.defs)
    if (!cycle && state[d.get()] == 0)
      visit(d.get());
  return cycle;
}

} // namespace heed::spec::detail
