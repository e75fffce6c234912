// Elaboration of a variant's statements: params (with command-line
// overrides), buffers, lets, score, mask, routes, gates and the
// normalization.
#include "Elaborate.h"

#include "heed/Frontend/Evaluate.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>

namespace heed::spec::detail {
namespace {

/// Parses an override's text as a value of `type`; an error message if it is not one.
std::optional<std::string> parseOverride(ScalarType type, llvm::StringRef text, Param &p) {
  switch (type) {
  case ScalarType::I64: {
    int64_t v;
    if (text.getAsInteger(10, v))
      return std::string("expected an integer");
    p.intValue = v;
    return std::nullopt;
  }
  case ScalarType::F32: {
    double v;
    if (text.getAsDouble(v) || !std::isfinite(v) || overflowsF32(v))
      return std::string("expected a finite number within the f32 range");
    p.floatValue = roundToF32(v);
    return std::nullopt;
  }
  case ScalarType::Bool:
    if (text != "true" && text != "false")
      return std::string("expected true or false");
    p.intValue = text == "true";
    return std::nullopt;
  }
  return std::nullopt;
}

bool isSymbolDim(llvm::StringRef d) {
  return d == "B" || d == "H" || d == "Hkv" || d == "Sq" || d == "Skv";
}

/// A buffer dimension's expression in canonical text (what the runtime's
/// resolveDims reads): sizes, integers and i64 params (replaced by their
/// values) under + - * / % and cdiv, min, max. `value` is set where it reads
/// no size. Returns the node that is not allowed, or null.
const Node *renderDim(const Node &n, const std::vector<Param> &params, std::string &text,
                      std::optional<int64_t> &value) {
  switch (n.kind) {
  case Node::Int:
    text = std::to_string(n.intValue);
    value = n.intValue;
    return nullptr;
  case Node::Name: {
    if (isSymbolDim(n.name)) {
      text = n.name;
      value.reset();
      return nullptr;
    }
    auto param = std::find_if(params.begin(), params.end(),
                              [&](const Param &p) { return p.name == n.name; });
    if (param == params.end() || param->type != ScalarType::I64)
      return &n;
    text = std::to_string(param->intValue);
    value = param->intValue;
    return nullptr;
  }
  case Node::Binary:
  case Node::Call: {
    bool call = n.kind == Node::Call;
    if (call && (n.kids.size() != 2 || (n.name != "cdiv" && n.name != "min" && n.name != "max")))
      return &n;
    const char *op = n.op == Tok::Plus ? "+" : n.op == Tok::Minus ? "-" : n.op == Tok::Star ? "*"
                     : n.op == Tok::Slash ? "/" : n.op == Tok::Percent ? "%" : nullptr;
    if (!call && !op)
      return &n;
    std::string a, b;
    std::optional<int64_t> x, y;
    if (const Node *bad = renderDim(*n.kids[0], params, a, x))
      return bad;
    if (const Node *bad = renderDim(*n.kids[1], params, b, y))
      return bad;
    // No spaces: the text is one field of the kernel artifact's buffer line.
    text = call ? n.name + "(" + a + "," + b + ")" : "(" + a + op + b + ")";
    value.reset();
    if (x && y) {
      if (call && n.name == "cdiv")
        value = *y > 0 ? floorDiv(*x + *y - 1, *y) : 0;
      else if (call)
        value = n.name == "min" ? std::min(*x, *y) : std::max(*x, *y);
      else if (n.op == Tok::Plus || n.op == Tok::Minus || n.op == Tok::Star)
        value = n.op == Tok::Plus ? *x + *y : n.op == Tok::Minus ? *x - *y : *x * *y;
      else
        value = n.op == Tok::Slash ? floorDiv(*x, *y) : floorRem(*x, *y);
    }
    return nullptr;
  }
  default:
    return &n;
  }
}

} // namespace

/// Elaborates one variant; params take overrides where given.
std::optional<Failure> elaborateVariant(Elaborator &el, const VariantDecl &decl,
                                        const ParamOverrides &overrides,
                                        llvm::StringSet<> &usedOverrides, Variant &out) {
  out.name = decl.name;
  Scope scope;
  el.buffers = &out.buffers;
  auto fail = [](llvm::SMLoc loc, std::string msg, std::vector<llvm::SMRange> ranges = {},
                 std::vector<Note> notes = {}) {
    return std::optional<Failure>(Failure{loc, std::move(msg), std::move(ranges),
                                          std::move(notes)});
  };
  // Every name the variant declares, and which are still to come.
  llvm::StringSet<> later;
  for (const Statement &s : decl.statements)
    if (s.kind == Statement::Param || s.kind == Statement::Buffer || s.kind == Statement::Let)
      later.insert(s.name);
  el.declaredLater = &later;

  llvm::StringMap<llvm::SMLoc> declared;
  const Statement *scoreStmt = nullptr, *maskStmt = nullptr, *routeStmt = nullptr,
                  *gateStmt = nullptr, *normalizeStmt = nullptr;
  // A statement that may appear once per variant: the first, or an error.
  auto once = [&](const Statement *&first, const Statement &s,
                  const char *what) -> std::optional<Failure> {
    if (first)
      return fail(s.loc, std::string("'") + what + "' is set twice in variant '" + decl.name + "'",
                  {}, {{first->loc, "first set here"}});
    first = &s;
    return std::nullopt;
  };
  out.score = makeScore();
  out.mask = makeBool(true);
  ExprPtr route;
  llvm::SMLoc routeLoc;
  std::vector<RouteCase> cases;
  // A score or mask statement, checked and stored in `slot`.
  auto output = [&](const Statement &s, const Scope &sc,
                    ExprPtr &slot) -> std::optional<Failure> {
    bool isScore = s.kind == Statement::Score;
    ExprPtr v = el.elaborate(*s.value, sc, isScore);
    if (!v)
      return el.failure;
    if (isScore) {
      if (v->type == ScalarType::I64)
        v = makeCast(ScalarType::F32, v);
      if (v->type != ScalarType::F32)
        return fail(s.value->begin,
                    std::string("the score must be a number, got ") + toString(v->type),
                    {s.value->range()});
    } else {
      if (v->type != ScalarType::Bool)
        return fail(s.value->begin,
                    std::string("the mask must be bool, got ") + toString(v->type),
                    {s.value->range()});
      // Names are checked as they are read; this catches any other path.
      if (el.info(v).readsScore)
        return fail(s.value->begin, "'score' is only available in the score modifier",
                    {s.value->range()});
    }
    slot = v;
    return std::nullopt;
  };
  for (const Statement &s : decl.statements) {
    if (s.kind == Statement::Param || s.kind == Statement::Buffer || s.kind == Statement::Let) {
      if (isReserved(s.name))
        return fail(s.nameLoc, "'" + s.name + "' is a reserved word and cannot be declared");
      auto [it, fresh] = declared.try_emplace(s.name, s.nameLoc);
      if (!fresh)
        return fail(s.nameLoc, "'" + s.name + "' is declared twice in variant '" + decl.name + "'",
                    {}, {{it->second, "first declared here"}});
      later.erase(s.name);
    }
    switch (s.kind) {
    case Statement::Param: {
      ExprPtr v = el.elaborate(*s.value, scope, /*scoreAllowed=*/false);
      if (!v)
        return el.failure;
      if (el.info(v).varies)
        return fail(s.value->begin, "the default of param '" + s.name + "' must be a constant",
                    {s.value->range()});
      ScalarType want = scalarOf(s.type);
      if (want == ScalarType::F32 && v->type == ScalarType::I64)
        v = makeCast(ScalarType::F32, v);
      if (v->type != want)
        return fail(s.value->begin,
                    "param '" + s.name + "' is " + toString(want) + " but its default is " +
                        toString(v->type),
                    {s.value->range()});
      Param p;
      p.name = s.name;
      p.type = want;
      Scalar c = evaluateConstant(*v);
      p.intValue = c.i;
      p.floatValue = c.f;
      if (want == ScalarType::F32 && !std::isfinite(p.floatValue))
        return fail(s.value->begin, "the default of param '" + s.name + "' is not finite",
                    {s.value->range()});
      for (const auto &[name, text] : overrides) {
        if (name != s.name)
          continue;
        usedOverrides.insert(name);
        if (std::optional<std::string> err = parseOverride(want, text, p))
          return fail(s.nameLoc, "--param " + name + "=" + text + ": '" + name + "' is " +
                                     toString(want) + ", " + *err);
      }
      ExprPtr value = want == ScalarType::F32    ? makeFloat(p.floatValue)
                      : want == ScalarType::Bool ? makeBool(p.intValue != 0)
                                                 : makeInt(p.intValue);
      scope[s.name] = Binding{value, -1, false};
      out.params.push_back(p);
      break;
    }
    case Statement::Buffer: {
      BufferDecl buf;
      buf.name = s.name;
      buf.elem = s.elem;
      for (size_t d = 0; d < s.dims.size(); ++d) {
        const auto &[dim, loc] = s.dims[d];
        if (const Node *e = d < s.dimExprs.size() ? s.dimExprs[d].get() : nullptr) {
          std::string text;
          std::optional<int64_t> value;
          if (const Node *bad = renderDim(*e, out.params, text, value))
            return fail(bad->loc,
                        "a buffer dimension is an expression of B, H, Hkv, Sq, Skv, integers "
                        "and i64 params with + - * / % and cdiv, min, max",
                        {bad->range()});
          if (value && *value <= 0)
            return fail(loc, "buffer dimensions must be positive, got " + text + " = " +
                                 std::to_string(*value),
                        {e->range()});
          buf.shape.push_back(value ? std::to_string(*value) : text);
          continue;
        }
        if (isSymbolDim(dim) || std::isdigit(static_cast<unsigned char>(dim[0]))) {
          buf.shape.push_back(dim);
          continue;
        }
        llvm::SMRange range(loc, llvm::SMLoc::getFromPointer(loc.getPointer() + dim.size()));
        auto param = std::find_if(out.params.begin(), out.params.end(),
                                  [&](const Param &p) { return p.name == dim; });
        if (param == out.params.end())
          return fail(loc,
                      "unknown dimension '" + dim +
                          "': expected B, H, Hkv, Sq, Skv, a positive integer or an i64 param" +
                          didYouMean(dim, {"B", "H", "Hkv", "Skv", "Sq"}),
                      {range});
        if (param->type != ScalarType::I64)
          return fail(loc,
                      "dimension '" + dim + "' is a param of type " + toString(param->type) +
                          ", but a dimension must be an i64 param",
                      {range});
        if (param->intValue <= 0)
          return fail(loc,
                      "dimension '" + dim + "' is " + std::to_string(param->intValue) +
                          ", but buffer dimensions must be positive",
                      {range});
        buf.shape.push_back(std::to_string(param->intValue));
      }
      scope[s.name] = Binding{nullptr, static_cast<int>(out.buffers.size()), false};
      out.buffers.push_back(std::move(buf));
      break;
    }
    case Statement::Let: {
      // A let may read score; whether that is allowed is checked where it is used.
      ExprPtr v = el.elaborate(*s.value, scope, /*scoreAllowed=*/true);
      if (!v)
        return el.failure;
      scope[s.name] = Binding{v, -1, true};
      break;
    }
    case Statement::Score:
    case Statement::Mask: {
      bool isScore = s.kind == Statement::Score;
      const Statement *&first = isScore ? scoreStmt : maskStmt;
      if (auto f = once(first, s, isScore ? "score" : "mask"))
        return f;
      if (auto f = output(s, scope, isScore ? out.score : out.mask))
        return f;
      break;
    }
    case Statement::Gate: {
      if (auto f = once(gateStmt, s, "gate"))
        return f;
      ExprPtr g = el.elaborate(*s.value, scope, /*scoreAllowed=*/false);
      if (!g)
        return el.failure;
      if (std::string err = applyGate(out, g); !err.empty())
        return fail(s.value->begin, err, {s.value->range()});
      break;
    }
    case Statement::Normalize: {
      if (auto f = once(normalizeStmt, s, "normalize"))
        return f;
      ExprPtr arg;
      if (s.value && !(arg = el.elaborate(*s.value, scope, /*scoreAllowed=*/false)))
        return el.failure;
      std::string err;
      if (s.name == "sigmoid")
        err = applySigmoid(out, arg);
      else if (s.name == "softmax_off_by_one")
        err = applySink(out, makeFloat(0));
      else
        err = applySink(out, arg);
      if (!err.empty())
        return fail(s.value->begin, err, {s.value->range()});
      break;
    }
    case Statement::Route: {
      if (routeStmt)
        return fail(s.loc, "variant '" + decl.name + "' has two routes",
                    {}, {{routeStmt->loc, "first route here"}});
      routeStmt = &s;
      ExprPtr r = el.elaborate(*s.value, scope, /*scoreAllowed=*/false);
      if (!r)
        return el.failure;
      if (el.info(r).readsToken)
        return fail(s.value->begin,
                    "a route may depend on the batch and head only (b, h, buffers read at "
                    "them), not on q or kv: it picks one variant per head",
                    {s.value->range()});
      if (r->type != ScalarType::I64 && r->type != ScalarType::Bool)
        return fail(s.value->begin,
                    std::string("a route selects by an integer (or bool), got ") +
                        toString(r->type),
                    {s.value->range()});
      routeLoc = s.value->begin;
      route = r;
      // Not a DenseMap: its reserved keys are the i64 values INT64_MAX and
      // INT64_MAX - 1, which are valid case values.
      std::map<int64_t, llvm::SMLoc> seen;
      for (const RouteCaseDecl &c : s.cases) {
        auto [it, fresh] = seen.try_emplace(c.value, c.loc);
        if (!fresh)
          return fail(c.loc, "route case " + std::to_string(c.value) + " appears twice", {},
                      {{it->second, "first here"}});
        RouteCase co{c.value, nullptr, nullptr};
        Scope caseScope = scope;
        const Statement *caseScore = nullptr, *caseMask = nullptr;
        for (const Statement &cs : c.body) {
          if (cs.kind == Statement::Let) {
            if (isReserved(cs.name))
              return fail(cs.nameLoc,
                          "'" + cs.name + "' is a reserved word and cannot be declared");
            if (declared.count(cs.name) || caseScope.count(cs.name))
              return fail(cs.nameLoc, "'" + cs.name + "' is already declared");
            ExprPtr v = el.elaborate(*cs.value, caseScope, /*scoreAllowed=*/true);
            if (!v)
              return el.failure;
            caseScope[cs.name] = Binding{v, -1, true};
            continue;
          }
          bool isScore = cs.kind == Statement::Score;
          const Statement *&first = isScore ? caseScore : caseMask;
          if (first)
            return fail(cs.loc,
                        std::string("'") + (isScore ? "score" : "mask") +
                            "' is set twice in route case " + std::to_string(c.value),
                        {}, {{first->loc, "first set here"}});
          first = &cs;
          if (auto f = output(cs, caseScope, isScore ? co.score : co.mask))
            return f;
        }
        cases.push_back(co);
      }
      if (cases.empty())
        return fail(s.loc, "a route needs at least one case");
      break;
    }
    }
  }
  if (route)
    if (std::string err = applyRoute(out, route, cases); !err.empty())
      return fail(routeLoc, err);
  el.declaredLater = nullptr;
  return std::nullopt;
}

} // namespace heed::spec::detail
