// An interpreter for the PTX of heed's sm_80 kernels (ptx_emulator.h says
// what it covers). Written from the PTX ISA (the instruction descriptions,
// "Matrix Fragments for mma.m16n8k16", ldmatrix, shfl.sync), not from heed's
// lowering, so that running a kernel here checks the lowering's fragment
// layouts, staging and synchronization against the ISA.
#include "ptx_emulator.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

unsigned long long executed = 0;
const bool reverseWarps = [] {
  const char *e = std::getenv("PTXEMU_REVERSE_WARPS");
  return e && *e && *e != '0';
}();
/// Device allocations (ptxemu_allocation): begin -> bytes. Global accesses
/// must lie inside one when any is registered.
std::map<uintptr_t, size_t> globalAllocations;

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(int line, const std::string &what) {
  throw Error("PTX line " + std::to_string(line) + ": " + what);
}

// Addresses of the shared and local windows as the kernel sees them (the
// values of their symbols); global addresses are host pointers.
constexpr uint64_t kSharedWindow = 0x10000, kLocalWindow = 0x20000000;
// Generic addresses of shared memory (cvta.shared) and of the kernel's
// parameters (mov of a parameter's name, cvta.param: sm_90 tensor maps).
constexpr uint64_t kGenericShared = 0x300000000000ull, kGenericParam = 0x310000000000ull;

enum class Kind : uint8_t { None, Reg, Imm, Vec, Mem, Sym, Special, Label };
enum Special : int { TidX, TidY, TidZ, NtidX, NtidY, NtidZ, CtaidX, CtaidY, CtaidZ, NctaidX,
                     NctaidY, NctaidZ, LaneId, WarpId };

struct Operand {
  Kind kind = Kind::None;
  int reg = -1;            // Reg; Mem's base register (-1: a symbol or absolute)
  int reg2 = -1;           // a second destination (setp d|q, shfl d|p)
  uint64_t imm = 0;        // Imm bits; Mem offset; Sym value
  bool immFloat = false;   // 0fXXXXXXXX / 0dXXXXXXXXXXXXXXXX
  std::vector<int> regs;   // Vec (-1: '_'; -2: an immediate, in vecImms)
  std::vector<uint64_t> vecImms; // Vec: each element's immediate bits (for -2)
  int special = -1;
  int label = -1;
  bool param = false;      // Mem/Sym of the parameter space (imm: its offset)
  bool negate = false;     // !%p
  bool dynamicShared = false; // Mem/Sym of the extern dynamic shared array (placed at launch)
  bool predicate = false;      // Reg declared .pred
};

enum class Op : uint8_t {
  Add, Sub, Mul, Mad, Div, Rem, Min, Max, Neg, Abs, And, Or, Xor, Not, Shl, Shr, Setp, Selp,
  Mov, Cvt, Cvta, Ld, St, Atom, Red, Bra, Ret, Fma, Ex2, Lg2, Rcp, Sqrt, Rsqrt, Tanh, Sin, Cos,
  Bfe, Bfi, Popc, Clz, Brev, Prmt, Shf, Lop3, Copysign, Testp, Mma, Ldmatrix, Shfl, Vote, Bar,
  WarpSync, CpAsync, CpCommit, CpWait, Nop, Activemask,
  // sm_90: named barriers' arrive, mbarriers, TMA, wgmma
  BarArrive, MbarInit, MbarInval, MbarArrive, MbarTryWait, Tma, Wgmma, WgCommit, WgWait,
  FenceProxyAsync
};

// Where a thread stops: a warp collective, a warpgroup collective (wgmma),
// a barrier, an mbarrier wait that may block, its end.
enum class Coll : uint8_t { No, Warp, Group, Barrier, Wait, Exit };

struct Type {
  char c = 'b'; // s, u, b, f, p (pred)
  int bits = 32;
  bool x2 = false; // f16x2, bf16x2
  bool bf = false; // bf16
};

struct Inst {
  int line = 0;
  std::string text;
  Op op = Op::Nop;
  std::vector<std::string> mods;
  Type t, t2; // main type (the destination's for cvt), the source's for cvt
  int pred = -1;
  bool predNeg = false;
  std::vector<Operand> ops;
  Coll coll = Coll::No;
  int vec = 1;        // ld/st .v2/.v4
  char space = 'g';   // ld/st/atom: g global, s shared, p param, l local, ' ' generic
  std::string cmp;    // setp's comparison; atom's operation; shfl's mode
  std::string combine;
  std::string rnd;    // rn rm rp rz, or rni rzi rmi rpi for cvt
  int fround = FE_TONEAREST; // rnd as a <cfenv> mode (rm, rp, rz; else to nearest)
  int cmpCode = 0;    // setp's comparison, decoded once (compareCode)
  bool sat = false, hi = false, wide = false, nanProp = false;
  bool trans = false;
  int count = 0; // ldmatrix .x1/.x2/.x4
};

struct Param {
  std::string name;
  size_t offset = 0, size = 0;
};

struct Function {
  std::string name;
  std::vector<Param> params;
  size_t paramBytes = 0;
  std::vector<Inst> code;
  std::vector<int> labels; // label id -> instruction index
  int regs = 0;
  size_t staticShared = 0, localBytes = 0;
  size_t dynamicAlign = 16; // the .extern .shared array's alignment
};

struct Module {
  std::vector<std::unique_ptr<Function>> functions;
};

bool isTypeName(const std::string &s, Type &t) {
  static const char *names[] = {"s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64", "b8", "b16",
                                "b32", "b64", "f16", "f32", "f64", "bf16", "pred", "f16x2",
                                "bf16x2"};
  for (const char *n : names)
    if (s == n) {
      t = Type();
      if (s == "pred") {
        t.c = 'p';
        t.bits = 1;
      } else if (s == "bf16" || s == "bf16x2") {
        t.c = 'f';
        t.bf = true;
        t.bits = s == "bf16" ? 16 : 32;
        t.x2 = s == "bf16x2";
      } else if (s == "f16x2") {
        t.c = 'f';
        t.bits = 32;
        t.x2 = true;
      } else {
        t.c = s[0];
        t.bits = std::stoi(s.substr(1));
      }
      return true;
    }
  return false;
}

std::string trim(const std::string &s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::vector<std::string> splitOperands(const std::string &s) {
  std::vector<std::string> out;
  int depth = 0;
  std::string cur;
  for (char c : s) {
    if (c == '{' || c == '[')
      ++depth;
    if (c == '}' || c == ']')
      --depth;
    if (c == ',' && depth == 0) {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty())
    out.push_back(trim(cur));
  return out;
}

int compareCode(const std::string &cmp, int line);

/// Parsing of one module.
struct Parser {
  Module &module;
  std::unordered_map<std::string, uint64_t> sharedSyms; // module-level .shared
  std::vector<std::pair<std::string, size_t>> sharedDecls; // name, alignment (in order)
  std::unordered_map<std::string, size_t> sharedSize;
  std::string dynamicShared;
  size_t dynamicAlign = 16;

  explicit Parser(Module &m) : module(m) {}

  Function *fn = nullptr;
  std::unordered_map<std::string, int> regIds, labelIds, paramIds;
  std::unordered_map<std::string, uint64_t> localSyms;

  // Registers declared by .reg: a prefix with a count (%r<64>) or a name.
  std::unordered_map<std::string, long> declaredRanges;
  std::unordered_map<std::string, bool> declaredNames; // name -> declared .pred
  std::unordered_map<std::string, bool> rangeIsPred;
  int currentLine = 0;
  void declare(const std::string &decl) {
    // ".reg .b32 %r<64>;" or ".reg .pred %p, %q;"
    std::string rest = trim(decl.substr(decl.find_first_of(" \t")));
    rest = trim(rest.substr(rest.find_first_of(" \t") == std::string::npos
                                ? rest.size()
                                : rest.find_first_of(" \t")));
    if (!rest.empty() && rest.back() == ';')
      rest.pop_back();
    bool pred = decl.find(".pred") != std::string::npos;
    if (scopeStack.size() > 1) { // an inner scope's registers
      for (const std::string &n : splitOperands(rest)) {
        if (n.find('<') != std::string::npos)
          fail(currentLine, "a register range in an inner scope is not supported by the emulator");
        scopedRegs[{scopeStack.back(), n}] = true;
        declaredNames[n + "@" + std::to_string(scopeStack.back())] = pred;
      }
      return;
    }
    for (const std::string &n : splitOperands(rest)) {
      size_t lt = n.find('<');
      if (lt != std::string::npos) {
        declaredRanges[n.substr(0, lt)] = std::stol(n.substr(lt + 1));
        rangeIsPred[n.substr(0, lt)] = pred;
      } else {
        declaredNames[n] = pred;
      }
    }
  }
  int regId(const std::string &unresolved) {
    std::string name = resolve(scopedRegs, unresolved);
    if (!declaredNames.count(name)) {
      size_t digits = name.find_last_not_of("0123456789");
      auto range = declaredRanges.find(name.substr(0, digits + 1));
      bool ok = range != declaredRanges.end() && digits + 1 < name.size() &&
                std::stol(name.substr(digits + 1)) < range->second;
      if (!ok)
        fail(currentLine, "'" + name +
                              "' is neither a declared register nor a special register the "
                              "emulator knows");
    }
    auto [it, fresh] = regIds.emplace(name, fn->regs);
    if (fresh)
      ++fn->regs;
    return it->second;
  }
  // Scoped blocks ({ } inside a function: inline asm) declare their own
  // registers and labels; a name resolves to the innermost scope declaring
  // it (mangled name@scope). Scope ids follow the order of the '{' lines.
  std::vector<int> scopeStack;
  int scopeCounter = 0;
  std::map<std::pair<int, std::string>, bool> scopedRegs, scopedLabels;
  std::string resolve(const std::map<std::pair<int, std::string>, bool> &scoped,
                      const std::string &name) const {
    for (size_t i = scopeStack.size(); i > 1; --i)
      if (scoped.count({scopeStack[i - 1], name}))
        return name + "@" + std::to_string(scopeStack[i - 1]);
    return name;
  }
  int labelId(const std::string &unresolved) {
    std::string name = resolve(scopedLabels, unresolved);
    auto [it, fresh] = labelIds.emplace(name, int(fn->labels.size()));
    if (fresh)
      fn->labels.push_back(-1);
    return it->second;
  }

  uint64_t parseImm(const std::string &s, bool &isFloat, int line) {
    isFloat = false;
    // The whole string must be the number (no text after it dropped).
    auto whole = [&](const std::string &digits, int base, bool isSigned) -> uint64_t {
      size_t used = 0;
      uint64_t v = 0;
      try {
        v = isSigned ? uint64_t(std::stoll(digits, &used, base))
                     : std::stoull(digits, &used, base);
      } catch (...) {
        used = 0;
      }
      if (digits.empty() || used != digits.size())
        fail(line, "cannot read the immediate '" + s + "'");
      return v;
    };
    if (s.size() == 10 && s[0] == '0' && (s[1] == 'f' || s[1] == 'F')) {
      isFloat = true;
      return whole(s.substr(2), 16, false);
    }
    if (s.size() == 18 && s[0] == '0' && (s[1] == 'd' || s[1] == 'D')) {
      isFloat = true;
      return whole(s.substr(2), 16, false);
    }
    std::string t = s;
    if (!t.empty() && (t.back() == 'U' || t.back() == 'u'))
      t.pop_back();
    if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X'))
      return whole(t.substr(2), 16, false);
    if (!t.empty() && t[0] == '-')
      return whole(t, 10, true);
    return whole(t, 10, false);
  }

  static bool hasImmediateElement(const Operand &o) {
    return o.kind == Kind::Vec && std::find(o.regs.begin(), o.regs.end(), -2) != o.regs.end();
  }
  Operand parseOperand(const std::string &text, int line) {
    Operand o;
    std::string s = trim(text);
    if (s.empty())
      fail(line, "empty operand");
    if (s[0] == '!') {
      o = parseOperand(s.substr(1), line);
      o.negate = true;
      return o;
    }
    if (s[0] == '{') {
      o.kind = Kind::Vec;
      for (const std::string &e : splitOperands(s.substr(1, s.size() - 2))) {
        bool imm = !e.empty() && e[0] != '%' && e != "_";
        bool f = false;
        o.vecImms.push_back(imm ? parseImm(e, f, line) : 0);
        o.regs.push_back(e == "_" ? -1 : imm ? -2 : regId(e));
      }
      return o;
    }
    if (s[0] == '[' && s.find('{') != std::string::npos) {
      // [tensorMap, {c0, c1, ...}]: TMA's map and coordinates.
      o.kind = Kind::Mem;
      std::string in = trim(s.substr(1, s.size() - 2));
      size_t comma = in.find(',');
      std::string base = trim(in.substr(0, comma));
      if (base[0] != '%')
        fail(line, "a tensor map operand must be a register");
      o.reg = regId(base);
      Operand coords = parseOperand(trim(in.substr(comma + 1)), line);
      o.regs = coords.regs;
      for (int r : o.regs)
        if (r < 0)
          fail(line, "'_' in TMA coordinates");
      return o;
    }
    if (s[0] == '[') {
      o.kind = Kind::Mem;
      std::string in = trim(s.substr(1, s.size() - 2));
      size_t plus = in.find_first_of("+-", 1);
      std::string base = trim(plus == std::string::npos ? in : in.substr(0, plus));
      if (plus != std::string::npos) {
        bool f;
        std::string off = trim(in.substr(plus + 1));
        o.imm = parseImm(off, f, line);
        if (in[plus] == '-')
          o.imm = uint64_t(-int64_t(o.imm));
      }
      if (base[0] == '%') {
        o.reg = regId(base);
      } else if (auto p = paramIds.find(base); p != paramIds.end()) {
        o.param = true;
        o.imm += fn->params[p->second].offset;
      } else if (auto sh = sharedSyms.find(base); sh != sharedSyms.end()) {
        o.dynamicShared = base == dynamicShared;
        o.imm += o.dynamicShared ? 0 : sh->second;
      } else if (auto l = localSyms.find(base); l != localSyms.end()) {
        o.imm += l->second;
      } else if (isdigit(static_cast<unsigned char>(base[0]))) {
        bool f;
        o.imm += parseImm(base, f, line);
      } else {
        fail(line, "unknown address '" + base + "'");
      }
      return o;
    }
    if (s[0] == '%') {
      static const std::pair<const char *, int> specials[] = {
          {"%tid.x", TidX},     {"%tid.y", TidY},       {"%tid.z", TidZ},
          {"%ntid.x", NtidX},   {"%ntid.y", NtidY},     {"%ntid.z", NtidZ},
          {"%ctaid.x", CtaidX}, {"%ctaid.y", CtaidY},   {"%ctaid.z", CtaidZ},
          {"%nctaid.x", NctaidX}, {"%nctaid.y", NctaidY}, {"%nctaid.z", NctaidZ},
          {"%laneid", LaneId},  {"%warpid", WarpId}};
      for (auto [name, id] : specials)
        if (s == name) {
          o.kind = Kind::Special;
          o.special = id;
          return o;
        }
      size_t bar = s.find('|');
      o.kind = Kind::Reg;
      std::string name = resolve(scopedRegs, trim(s.substr(0, bar)));
      o.reg = regId(trim(s.substr(0, bar)));
      if (auto d = declaredNames.find(name); d != declaredNames.end())
        o.predicate = d->second;
      else
        o.predicate = rangeIsPred[name.substr(0, name.find_last_not_of("0123456789") + 1)];
      if (bar != std::string::npos)
        o.reg2 = regId(trim(s.substr(bar + 1)));
      return o;
    }
    if (std::string r = resolve(scopedRegs, s); declaredNames.count(r) && s[0] != '%') {
      o.kind = Kind::Reg; // a register an inline-asm scope declared without '%'
      o.reg = regId(s);
      o.predicate = declaredNames[r];
      return o;
    }
    if (s[0] == '$' || (isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) {
      if (auto sh = sharedSyms.find(s); sh != sharedSyms.end()) {
        o.kind = Kind::Sym;
        o.dynamicShared = s == dynamicShared;
        o.imm = o.dynamicShared ? 0 : sh->second;
        return o;
      }
      if (auto l = localSyms.find(s); l != localSyms.end()) {
        o.kind = Kind::Sym;
        o.imm = l->second;
        return o;
      }
      if (auto p = paramIds.find(s); p != paramIds.end()) {
        o.kind = Kind::Sym;
        o.param = true;
        o.imm = fn->params[p->second].offset;
        return o;
      }
      o.kind = Kind::Label;
      o.label = labelId(s);
      return o;
    }
    o.kind = Kind::Imm;
    o.imm = parseImm(s, o.immFloat, line);
    return o;
  }

  void decode(Inst &in, const std::string &opcode) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (size_t i = 0; i <= opcode.size(); ++i)
      if (i == opcode.size() || opcode[i] == '.') {
        parts.push_back(opcode.substr(start, i - start));
        start = i + 1;
      }
    std::string base = parts[0];
    std::vector<Type> types;
    for (size_t i = 1; i < parts.size(); ++i) {
      Type t;
      const std::string &p = parts[i];
      if (isTypeName(p, t)) {
        types.push_back(t);
        continue;
      }
      in.mods.push_back(p);
      if (p == "rn" || p == "rm" || p == "rp" || p == "rz" || p == "rni" || p == "rzi" ||
          p == "rmi" || p == "rpi")
        in.rnd = p;
      else if (p == "sat")
        in.sat = true;
      else if (p == "hi")
        in.hi = true;
      else if (p == "wide")
        in.wide = true;
      else if (p == "NaN")
        in.nanProp = true;
      else if (p == "trans")
        in.trans = true;
      else if (p == "global")
        in.space = 'g';
      else if (p == "shared")
        in.space = 's';
      else if (p == "param")
        in.space = 'p';
      else if (p == "local")
        in.space = 'l';
      else if (p == "v2")
        in.vec = 2;
      else if (p == "v4")
        in.vec = 4;
      else if (p == "x1" || p == "x2" || p == "x4")
        in.count = p[1] - '0';
    }
    in.fround = in.rnd == "rm"   ? FE_DOWNWARD
                : in.rnd == "rp" ? FE_UPWARD
                : in.rnd == "rz" ? FE_TOWARDZERO
                                 : FE_TONEAREST;
    if (!types.empty())
      in.t = types.front();
    if (types.size() > 1)
      in.t2 = types[1];
    auto has = [&](const char *m) {
      for (const std::string &x : in.mods)
        if (x == m)
          return true;
      return false;
    };
    // Modifiers the emulator implements (or that do not change a result:
    // cache and scope hints); any other is refused rather than ignored.
    static const char *known[] = {
        "rn", "rm", "rp", "rz", "rni", "rzi", "rmi", "rpi", "sat", "approx", "ftz", "full",
        "hi", "lo", "wide", "NaN", "trans", "global", "shared", "param", "local", "v2", "v4",
        "x1", "x2", "x4", "sync", "aligned", "m8n8", "m16n8k16", "row", "col", "bfly", "up",
        "down", "idx", "ballot", "all", "any", "uni", "ca", "cg", "to", "nc", "eq", "ne", "lt",
        "le", "gt", "ge", "lo", "ls", "hs", "equ", "neu", "ltu", "leu", "gtu", "geu", "nan",
        "num", "and", "or", "xor", "add", "min", "max", "exch", "cas", "inc", "dec",
        "commit_group", "wait_group", "wait_all", "async", "cta", "gl", "sys", "relaxed",
        "acquire", "release", "acq_rel", "gpu", "warp", "l", "r", "wrap", "clamp", "finite",
        "infinite", "number", "notanumber", "normal", "subnormal", "L1", "L2", "ptr", "b",
        "shared::cta", "shared::cluster", "proxy", "init", "inval", "arrive", "expect_tx", "try_wait",
        "parity", "bulk", "tensor", "tile", "mbarrier::complete_tx::bytes", "1d", "2d", "3d",
        "4d", "5d", "mma_async", "fence", "commit_group", "wait_group", "setmaxnreg"};
    for (const std::string &m : in.mods) {
      bool ok = m.rfind("m64n", 0) == 0; // wgmma shapes
      for (const char *k : known)
        ok = ok || m == k;
      if (!ok)
        fail(in.line, "modifier ." + m + " of '" + opcode + "' is not supported by the emulator");
    }
    static const std::unordered_map<std::string, Op> simple = {
        {"add", Op::Add},   {"sub", Op::Sub},     {"mul", Op::Mul},     {"mad", Op::Mad},
        {"div", Op::Div},   {"rem", Op::Rem},     {"min", Op::Min},     {"max", Op::Max},
        {"neg", Op::Neg},   {"abs", Op::Abs},     {"and", Op::And},     {"or", Op::Or},
        {"xor", Op::Xor},   {"not", Op::Not},     {"shl", Op::Shl},     {"shr", Op::Shr},
        {"selp", Op::Selp}, {"mov", Op::Mov},     {"cvt", Op::Cvt},     {"cvta", Op::Cvta},
        {"ld", Op::Ld},     {"st", Op::St},       {"atom", Op::Atom},   {"red", Op::Red},
        {"bra", Op::Bra},   {"ret", Op::Ret},     {"exit", Op::Ret},    {"fma", Op::Fma},
        {"ex2", Op::Ex2},   {"lg2", Op::Lg2},     {"rcp", Op::Rcp},     {"sqrt", Op::Sqrt},
        {"rsqrt", Op::Rsqrt}, {"tanh", Op::Tanh}, {"sin", Op::Sin},     {"cos", Op::Cos},
        {"bfe", Op::Bfe},   {"bfi", Op::Bfi},     {"popc", Op::Popc},   {"clz", Op::Clz},
        {"brev", Op::Brev}, {"prmt", Op::Prmt},   {"shf", Op::Shf},     {"lop3", Op::Lop3},
        {"copysign", Op::Copysign}, {"testp", Op::Testp}, {"mma", Op::Mma},
        {"ldmatrix", Op::Ldmatrix}, {"shfl", Op::Shfl}, {"vote", Op::Vote},
        {"membar", Op::Nop}, {"fence", Op::Nop},  {"prefetch", Op::Nop}, {"prefetchu", Op::Nop},
        {"nanosleep", Op::Nop}, {"activemask", Op::Activemask}, {"setp", Op::Setp},
    };
    if (base == "bar" || base == "barrier") {
      if (has("red"))
        fail(in.line, "bar.red is not supported by the emulator");
      if (has("arrive")) {
        in.op = Op::BarArrive;
        return;
      }
      in.op = has("warp") ? Op::WarpSync : Op::Bar;
      in.coll = has("warp") ? Coll::Warp : Coll::Barrier;
      return;
    }
    if (base == "cp") {
      if (has("bulk") && has("tensor") && has("tile") && has("mbarrier::complete_tx::bytes") &&
          has("global")) {
        in.op = Op::Tma;
        for (const std::string &m : in.mods)
          if (m.size() == 2 && m[1] == 'd' && isdigit(static_cast<unsigned char>(m[0])))
            in.count = m[0] - '0';
        return;
      }
      if (has("bulk") || has("tensor"))
        fail(in.line, "'" + opcode + "' is not supported by the emulator");
      if (has("commit_group"))
        in.op = Op::CpCommit;
      else if (has("wait_group") || has("wait_all"))
        in.op = Op::CpWait;
      else
        in.op = Op::CpAsync;
      if (in.op == Op::CpWait && has("wait_all"))
        in.count = -1;
      return;
    }
    if (base == "bar" && has("arrive")) {
      in.op = Op::BarArrive;
      return;
    }
    if (base == "fence" && has("proxy") && has("async") && !has("global")) {
      in.op = Op::FenceProxyAsync; // orders this thread's generic writes for the async proxy
      return;
    }
    if (base == "setmaxnreg" || (base == "fence" && has("proxy"))) {
      in.op = Op::Nop; // register reallocation, other proxy fences: nothing to emulate
      return;
    }
    if (base == "mbarrier") {
      if (has("init"))
        in.op = Op::MbarInit;
      else if (has("inval"))
        in.op = Op::MbarInval;
      else if (has("try_wait") && has("parity"))
        in.op = Op::MbarTryWait, in.coll = Coll::Wait;
      else if (has("arrive") && !has("expect_tx"))
        in.op = Op::MbarArrive;
      else if (has("arrive") && has("expect_tx"))
        in.op = Op::MbarArrive, in.count = 1;
      else
        fail(in.line, "'" + opcode + "' is not supported by the emulator");
      return;
    }
    if (base == "wgmma") {
      if (has("mma_async")) {
        in.op = Op::Wgmma;
        in.coll = Coll::Group;
        if (types.size() != 3 || types[0].c != 'f' || types[0].bits != 32)
          fail(in.line, "wgmma form '" + opcode + "' is not supported by the emulator (f32 "
                        "accumulators, f16/bf16 inputs)");
        in.t2 = types[1];
        for (const std::string &m : in.mods)
          if (m.rfind("m64n", 0) == 0)
            in.count = std::stoi(m.substr(4)); // N
        if (!in.count)
          fail(in.line, "wgmma without an m64nNk16 shape");
      } else if (has("commit_group")) {
        in.op = Op::WgCommit;
      } else if (has("wait_group")) {
        in.op = Op::WgWait;
      } else {
        in.op = Op::Nop; // wgmma.fence
      }
      return;
    }
    auto it = simple.find(base);
    if (it == simple.end())
      fail(in.line, "instruction '" + opcode + "' is not supported by the emulator");
    in.op = it->second;
    if (in.op == Op::Ret)
      in.coll = Coll::Exit;
    if (in.op == Op::Mma || in.op == Op::Ldmatrix || in.op == Op::Shfl || in.op == Op::Vote ||
        in.op == Op::Activemask)
      in.coll = Coll::Warp;
    if (in.op == Op::Setp || in.op == Op::Shfl || in.op == Op::Vote) {
      in.cmp = parts[1];
      if (in.op == Op::Shfl && in.cmp == "sync")
        in.cmp = parts[2];
      if (in.op == Op::Vote && in.cmp == "sync")
        in.cmp = parts[2];
      for (const char *c : {"and", "or", "xor"})
        if (in.op == Op::Setp && has(c))
          in.combine = c;
      if (in.op == Op::Setp)
        in.cmpCode = compareCode(in.cmp, in.line);
    }
    if (in.op == Op::Atom || in.op == Op::Red) {
      for (const char *c : {"add", "min", "max", "exch", "cas", "and", "or", "xor", "inc", "dec"})
        if (has(c))
          in.cmp = c;
      if (in.space != 's')
        in.space = has("global") ? 'g' : ' ';
    }
    if (in.op == Op::Ld || in.op == Op::St) {
      bool spaced = has("global") || has("shared") || has("param") || has("local");
      if (!spaced)
        in.space = ' ';
    }
    if (in.op == Op::Mma) {
      if (!has("m16n8k16") || !has("row") || !has("col") || types.size() != 4 ||
          types[0].c != 'f' || types[0].bits != 32 || types[3].bits != 32)
        fail(in.line, "mma form '" + opcode +
                          "' is not supported by the emulator (m16n8k16.row.col, f32 "
                          "accumulators)");
      in.t2 = types[1]; // the A/B element type
    }
    // 16-bit and packed floats: only moved, converted, selected or fed to mma.
    bool halfFloat = in.t.c == 'f' && (in.t.bits == 16 || in.t.x2);
    if (halfFloat && in.op != Op::Mov && in.op != Op::Ld && in.op != Op::St &&
        in.op != Op::Cvt && in.op != Op::Selp && in.op != Op::Mma && in.op != Op::Atom &&
        in.op != Op::Red)
      fail(in.line, "'" + opcode + "': 16-bit and packed float arithmetic is not supported by "
                    "the emulator");
    if ((in.op == Op::Atom || in.op == Op::Red) && halfFloat)
      fail(in.line, "'" + opcode + "': 16-bit float atomics are not supported by the emulator");
    if (in.sat && in.t.c != 'f' && in.op != Op::Cvt)
      fail(in.line, "'" + opcode + "': integer saturation is not supported by the emulator");
    if (in.op == Op::Ldmatrix && (!has("m8n8") || in.t.bits != 16 || in.count == 0))
      fail(in.line, "ldmatrix form '" + opcode + "' is not supported by the emulator");
  }

  Module *parse(const std::string &text) {
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t i = 0; i <= text.size(); ++i)
      if (i == text.size() || text[i] == '\n') {
        lines.push_back(text.substr(start, i - start));
        start = i + 1;
      }
    size_t sharedEnd = 0;
    { // Labels defined in inner scopes, by scope (the same numbering as below).
      std::vector<int> stack;
      int counter = 0;
      for (const std::string &raw : lines) {
        std::string l = trim(raw.substr(0, raw.find("//")));
        if (l.find(".entry") != std::string::npos) {
          stack.clear();
          counter = 0;
        } else if (l == "{") {
          stack.push_back(counter++);
        } else if (l == "}" && !stack.empty()) {
          stack.pop_back();
        } else if (stack.size() > 1 && !l.empty() && l.back() == ':') {
          scopedLabels[{stack.back(), l.substr(0, l.size() - 1)}] = true;
        }
      }
    }
    for (size_t i = 0; i < lines.size(); ++i) {
      int lineNo = int(i) + 1;
      std::string l = lines[i];
      if (size_t c = l.find("//"); c != std::string::npos)
        l = l.substr(0, c);
      l = trim(l);
      if (l.empty())
        continue;
      // Module- or function-level shared and local arrays.
      auto arrayDecl = [&](const std::string &d, size_t &align, std::string &name,
                           size_t &bytes) {
        align = 1;
        if (size_t a = d.find(".align"); a != std::string::npos)
          align = std::stoul(d.substr(a + 6));
        size_t open = d.find('['), close = d.find(']');
        size_t nameEnd = open == std::string::npos ? d.find(';') : open;
        size_t nameStart = d.find_last_of(" \t", nameEnd - 1) + 1;
        name = d.substr(nameStart, nameEnd - nameStart);
        bytes = 0;
        if (open != std::string::npos && close > open + 1)
          bytes = std::stoul(d.substr(open + 1, close - open - 1));
        for (const char *ty : {".b8", ".b16", ".b32", ".b64", ".u8", ".u32", ".f32", ".u64"})
          if (d.find(std::string(ty) + " ") != std::string::npos) {
            int bits = std::atoi(ty + 2);
            if (bytes)
              bytes *= size_t(bits / 8);
            else if (open == std::string::npos)
              bytes = size_t(bits / 8);
          }
      };
      if (l.rfind(".extern .shared", 0) == 0 || l.rfind(".shared", 0) == 0) {
        size_t align, bytes;
        std::string name;
        arrayDecl(l, align, name, bytes);
        if (l.rfind(".extern", 0) == 0) {
          dynamicShared = name;
          dynamicAlign = std::max<size_t>(align, 16);
          sharedSyms[name] = 0; // placed after the static ones at launch
        } else {
          sharedEnd = (sharedEnd + align - 1) / align * align;
          sharedSyms[name] = kSharedWindow + sharedEnd;
          sharedEnd += bytes;
          // A .shared declared in a function's body (LLVM demotes a
          // kernel's own workgroup memory there) is that function's too.
          if (fn)
            fn->staticShared = std::max(fn->staticShared, sharedEnd);
        }
        continue;
      }
      if (l.find(".entry") != std::string::npos) {
        auto f = std::make_unique<Function>();
        fn = f.get();
        regIds.clear();
        scopeStack.clear();
        scopeCounter = 0;
        declaredRanges.clear();
        declaredNames.clear();
        labelIds.clear();
        paramIds.clear();
        localSyms.clear();
        size_t e = l.find(".entry") + 6, paren = l.find('(', e);
        fn->name = trim(l.substr(e, paren == std::string::npos ? std::string::npos : paren - e));
        // The parameter list, from '(' to ')' (on this line or the next ones).
        std::string header = l.substr(paren == std::string::npos ? l.size() : paren + 1);
        size_t j = i;
        while (header.find(')') == std::string::npos && j + 1 < lines.size())
          header += " " + lines[++j];
        if (header.find(')') == std::string::npos)
          fail(lineNo, "the entry's parameter list has no ')'");
        header = header.substr(0, header.find(')'));
        for (std::string p : splitOperands(header)) {
          if (size_t c = p.find("//"); c != std::string::npos)
            p = trim(p.substr(0, c));
          if (p.rfind(".param", 0) != 0)
            fail(lineNo, "cannot read the parameter '" + p + "'");
          Param param;
          size_t align = 1;
          if (size_t a = p.find(".align"); a != std::string::npos)
            align = std::stoul(p.substr(a + 6));
          size_t open = p.find('[');
          size_t nameEnd = open == std::string::npos ? p.size() : open;
          size_t nameStart = p.find_last_of(" \t", nameEnd - 1) + 1;
          param.name = p.substr(nameStart, nameEnd - nameStart);
          if (open != std::string::npos) {
            param.size = std::stoul(p.substr(open + 1));
          } else {
            Type t;
            std::string ty;
            for (const char *cand : {".u64", ".s64", ".b64", ".u32", ".s32", ".b32", ".f32",
                                     ".f64", ".u16", ".b16", ".u8", ".b8"})
              if (p.find(std::string(cand) + " ") != std::string::npos) {
                ty = cand + 1;
                break;
              }
            if (ty.empty() || !isTypeName(ty, t))
              fail(lineNo, "cannot read the parameter '" + p + "'");
            param.size = size_t(t.bits / 8);
            align = std::max(align, param.size);
          }
          fn->paramBytes = (fn->paramBytes + align - 1) / align * align;
          param.offset = fn->paramBytes;
          fn->paramBytes += param.size;
          paramIds[param.name] = int(fn->params.size());
          fn->params.push_back(param);
        }
        i = j;
        fn->staticShared = sharedEnd;
        module.functions.push_back(std::move(f));
        continue;
      }
      if (!fn)
        continue;
      currentLine = lineNo;
      if (l.rfind(".reg", 0) == 0) {
        declare(l);
        continue;
      }
      std::string directive = l.substr(0, l.find_first_of(" \t"));
      if (directive == ".loc" || directive == ".file") // line information
        continue;
      if (l == "{") {
        scopeStack.push_back(scopeCounter++);
        continue;
      }
      if (l == "}") {
        if (scopeStack.empty())
          fail(lineNo, "unbalanced '}'");
        scopeStack.pop_back();
        continue;
      }
      if (l.rfind(".maxntid", 0) == 0 ||
          l.rfind(".reqntid", 0) == 0 || l.rfind(".minnctapersm", 0) == 0 ||
          l.rfind(".maxnreg", 0) == 0 || l.rfind(".pragma", 0) == 0)
        continue;
      if (l.rfind(".local", 0) == 0) {
        size_t align, bytes;
        std::string name;
        arrayDecl(l, align, name, bytes);
        fn->localBytes = (fn->localBytes + align - 1) / align * align;
        localSyms[name] = kLocalWindow + fn->localBytes;
        fn->localBytes += bytes;
        continue;
      }
      if (l[0] == '.')
        fail(lineNo, "directive '" + l + "' is not supported by the emulator");
      if (l.back() == ':') {
        fn->labels[size_t(labelId(l.substr(0, l.size() - 1)))] = int(fn->code.size());
        continue;
      }
      // An instruction may span lines (mma's operand lists).
      while (l.back() != ';' && i + 1 < lines.size()) {
        std::string next = lines[++i];
        if (size_t c = next.find("//"); c != std::string::npos)
          next = next.substr(0, c);
        l += " " + trim(next);
        l = trim(l);
      }
      if (l.back() != ';')
        fail(lineNo, "expected ';' at the end of '" + l + "'");
      l.pop_back();
      if (l.find(';') != std::string::npos || l[0] == '{')
        fail(lineNo, "several statements on one line, or a { } block: not supported by the "
                     "emulator");
      Inst in;
      in.line = lineNo;
      in.text = l;
      if (l[0] == '@') {
        size_t sp = l.find_first_of(" \t");
        std::string p = l.substr(1, sp - 1);
        in.predNeg = p[0] == '!';
        in.pred = regId(in.predNeg ? p.substr(1) : p);
        l = trim(l.substr(sp));
      }
      size_t sp = l.find_first_of(" \t");
      std::string opcode = l.substr(0, sp);
      decode(in, opcode);
      if (sp != std::string::npos)
        for (const std::string &o : splitOperands(l.substr(sp)))
          in.ops.push_back(parseOperand(o, lineNo));
      for (const Operand &o : in.ops)
        if (in.op != Op::St && hasImmediateElement(o))
          fail(lineNo, "an immediate in a vector operand (the emulator takes them in st only)");
      fn->code.push_back(std::move(in));
    }
    for (auto &f : module.functions) {
      f->dynamicAlign = dynamicAlign;
      if (!dynamicShared.empty())
        f->staticShared = std::max(f->staticShared, sharedEnd);
    }
    for (auto &f : module.functions)
      for (const Inst &in : f->code)
        for (const Operand &o : in.ops)
          if (o.kind == Kind::Label && f->labels[size_t(o.label)] < 0 && in.op == Op::Bra)
            fail(in.line, "branch to an unknown label");
    return &module;
  }
};

// ---------------------------------------------------------------------------
// Values. (The emulator keeps its own bf16/f16 conversions rather than
// runtime/Tensor.cpp's: it is part of a stand-in driver library that links
// nothing of heed's, and it is meant to read the ISA independently of it.)

float asF32(uint64_t v) {
  float f;
  uint32_t u = uint32_t(v);
  std::memcpy(&f, &u, 4);
  return f;
}
uint64_t fromF32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
double asF64(uint64_t v) {
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}
uint64_t fromF64(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
}
float bf16ToF32(uint16_t h) { return asF32(uint64_t(h) << 16); }
uint16_t f32ToBF16(float f) { // round to nearest even
  uint32_t u = uint32_t(fromF32(f));
  if (std::isnan(f))
    return uint16_t((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}
float f16ToF32(uint16_t h) {
  uint32_t sign = uint32_t(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f)
    return asF32(sign | 0x7f800000 | (man << 13));
  if (exp == 0) {
    if (!man)
      return asF32(sign);
    float m = std::ldexp(float(man), -24);
    return sign ? -m : m;
  }
  return asF32(sign | ((exp + 112) << 23) | (man << 13));
}
uint16_t f32ToF16(float f) { // round to nearest even
  uint32_t u = uint32_t(fromF32(f));
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  if (std::isnan(f))
    return uint16_t(sign | 0x7e00);
  float a = std::fabs(f);
  if (a >= 65520.f)
    return uint16_t(sign | 0x7c00);
  if (a < 6.103515625e-05f) { // subnormal: units of 2^-24
    float q = std::nearbyint(a * 16777216.f);
    return uint16_t(sign | uint16_t(q));
  }
  int e;
  float m = std::frexp(a, &e); // a = m 2^e, m in [0.5, 1)
  float q = std::nearbyint(m * 2048.f); // 11 significant bits
  if (q >= 2048.f) {
    q /= 2;
    ++e;
  }
  int exp = e - 1 + 15;
  if (exp >= 31)
    return uint16_t(sign | 0x7c00);
  return uint16_t(sign | (exp << 10) | (uint16_t(q) & 0x3ff));
}

/// One thread.
struct Thread {
  int pc = 0;
  enum State : uint8_t { Running, AtWarp, AtGroup, AtBarrier, Blocked, Done } state = Running;
  int barrier = 0; // the barrier id it waits at
  int failedWait = -1; // the mbarrier try_wait that last returned false
  // wgmma results not yet waited for: per register the value it will hold
  // and the number of pending groups writing it; the uncommitted and the
  // committed groups' registers, oldest first. Such a register is not to be
  // read or written but by wgmma until its wgmma.wait_group.
  std::vector<uint64_t> shadow;
  std::vector<uint16_t> pendingWrites;
  unsigned lockedRegs = 0;
  std::vector<int> wgUncommitted;
  std::vector<std::vector<int>> wgGroups;
  // The shared bytes those wgmma groups read (kept by the warpgroup's first
  // thread): not to be overwritten until the group's wgmma.wait_group.
  std::vector<uint32_t> wgUncommittedBytes;
  std::vector<std::vector<uint32_t>> wgGroupBytes;
  unsigned tid[3] = {0, 0, 0};
  unsigned lane = 0, warp = 0;
  std::vector<uint64_t> r;
  std::vector<uint8_t> local;
  struct Copy {
    uint64_t dst;
    const uint8_t *src;
    unsigned bytes, srcBytes;
    const Inst *issue;
  };
  std::vector<Copy> pending;              // not yet committed
  std::vector<std::vector<Copy>> groups;  // committed, oldest first
};

struct Launch {
  const Function &f;
  std::vector<uint8_t> params;
  std::vector<uint8_t> shared;
  size_t dynamicBase = 0; // offset of the dynamic shared memory
  unsigned grid[3], block[3], ctaid[3] = {0, 0, 0};
  std::vector<Thread> threads;

  // Racecheck of shared memory (as compute-sanitizer's racecheck): two
  // threads' accesses to a byte, one a write, in the same barrier interval
  // (`epoch`, advanced by bar.sync) are a hazard unless both threads are in
  // one warp and a warp-collective instruction (mma, ldmatrix, shfl, ...)
  // of that warp lies between them (`warpEpochs`). Atomics are not checked.
  struct Access {
    uint32_t epoch = 0;
    int32_t thread = -1; // -2: several threads
    int32_t warp = -1;   // -2: several warps
    uint32_t warpEpoch = 0;
  };
  std::vector<Access> lastWrite, lastRead; // per byte of shared memory
  uint32_t epoch = 1;
  std::vector<uint32_t> warpEpochs;
  // cp.async copies issued and not yet waited for: per shared byte, the
  // issuing thread (-1: none). Any access by another thread, or a read by
  // the issuer, before the wait is a race (the copy lands at any time).
  std::vector<int32_t> inFlight;
  // Per shared byte: how many pending wgmma groups read it.
  std::vector<uint16_t> wgmmaReaders;
  // The async proxy (a TMA's writes and its complete_tx on the mbarrier,
  // wgmma's operand reads) sees a thread's generic-proxy writes to shared
  // memory (st, mbarrier.init) only after a fence.proxy.async of that
  // thread (PTX ISA, "Proxies"): per shared byte its last generic writer
  // (-1: none, or the async proxy wrote it since) and that thread's count
  // of such fences at the write; per thread its count.
  std::vector<int32_t> genericWriter;
  std::vector<uint32_t> genericWriterFences, proxyFences;
  void markGeneric(const Thread &t, uint64_t off, size_t bytes) {
    int32_t me = index(t);
    for (uint64_t b = off; b < off + bytes; ++b) {
      genericWriter[b] = me;
      genericWriterFences[b] = proxyFences[size_t(me)];
    }
  }
  void checkFenced(uint64_t off, size_t bytes, const Inst &in, const char *what) {
    for (uint64_t b = off; b < off + bytes; ++b) {
      int32_t w = genericWriter[b];
      if (w >= 0 && proxyFences[size_t(w)] == genericWriterFences[b])
        error(in, std::string(what) + " shared byte " + std::to_string(b) + " that thread " +
                      std::to_string(w) +
                      " wrote through the generic proxy with no fence.proxy.async of that "
                      "thread since (the async proxy may not see the write)");
    }
  }
  void checkNotReadByWgmma(uint64_t off, size_t bytes, const Inst &in) {
    for (uint64_t b = off; b < off + bytes; ++b)
      if (wgmmaReaders[b])
        error(in, "overwrites shared byte " + std::to_string(b) +
                      " that a pending wgmma reads (before its wgmma.wait_group)");
  }
  static constexpr unsigned long long kStepLimit = 20000000000ull;

  // Named barriers (bar.sync / bar.arrive id, count).
  static constexpr unsigned kNamedBarriers = 16;
  struct NamedBarrier {
    unsigned arrived = 0, expected = 0;
    bool wholeBlock = false; // no count given: exited threads count as arrived
  };
  NamedBarrier named[kNamedBarriers];
  void arrive(unsigned id, unsigned count, const Inst &in, bool wholeBlock = false) {
    if (id >= kNamedBarriers)
      error(in, "barrier id " + std::to_string(id) + " (0 to 15)");
    if (count == 0 || count % 32 || count > threads.size())
      error(in, "barrier thread count " + std::to_string(count) +
                    " (a multiple of 32, at most the block's)");
    NamedBarrier &b = named[id];
    if (b.expected && b.expected != count)
      error(in, "barrier " + std::to_string(id) + " used with counts " +
                    std::to_string(b.expected) + " and " + std::to_string(count));
    b.expected = count;
    b.wholeBlock = wholeBlock;
    ++b.arrived;
  }

  // mbarriers (by shared offset) and the TMA copies in flight to them.
  struct Mbarrier {
    uint32_t expected = 0, pending = 0, phase = 0;
    int64_t tx = 0;
  };
  std::map<uint64_t, Mbarrier> mbarriers;
  struct TmaCopy {
    uint64_t mbar, dst; // shared offsets
    std::vector<uint8_t> data; // the box, in box order
    int swizzle;        // 0, 32, 64, 128 bytes
    uint32_t phase;     // the mbarrier's phase at the issue
    int issuer;
    const Inst *issue;
  };
  std::vector<TmaCopy> tmaInFlight;
  Mbarrier &mbarrierAt(uint64_t off, const Inst &in) {
    auto it = mbarriers.find(off);
    if (it == mbarriers.end())
      error(in, "an mbarrier never initialized (shared offset " + std::to_string(off) + ")");
    return it->second;
  }
  void completeIfDone(Mbarrier &m, uint64_t off, const Inst &in) {
    if (m.pending == 0 && m.tx == 0) {
      // A copy issued in this phase and not landed would land in the next
      // one: its bytes were not expected (expect_tx short or missing).
      for (const TmaCopy &c : tmaInFlight)
        if (c.mbar == off && c.phase == m.phase)
          error(*c.issue, "an mbarrier phase completed while a TMA copy issued in it is still "
                          "in flight: its bytes were not counted by expect_tx");
      ++m.phase;
      m.pending = m.expected;
    }
    if (m.tx < 0)
      error(in, "an mbarrier received more TMA bytes than expect_tx announced");
  }
  void landTma(uint64_t mbar);
  bool tryWait(Thread &t, const Inst &in);
  void tma(Thread &t, const Inst &in);
  void wgmma(std::vector<Thread *> &group, const Inst &in);
  unsigned long long steps = 0;

  Launch(const Function &fn) : f(fn) {}

  static int index(const Thread &t) { return int(t.warp * 32 + t.lane); }
  bool ordered(const Access &a, const Thread &t) const {
    return a.epoch != epoch || a.thread == index(t) ||
           (a.warp == int(t.warp) && a.warpEpoch < warpEpochs[t.warp]);
  }
  void race(const Thread &t, const Access &a, uint64_t off, const char *mine,
            const char *theirs, const Inst &in) {
    std::string other = a.thread == -2 ? "other threads"
                                       : "thread " + std::to_string(a.thread) + " (warp " +
                                             std::to_string(a.warp) + ")";
    error(in, "shared memory race: thread " + std::to_string(index(t)) + " (warp " +
                  std::to_string(t.warp) + ") " + mine + " byte " + std::to_string(off) +
                  " that " + other + " " + theirs +
                  " since the last bar.sync, with no barrier between");
  }
  /// Checks and records thread t's access to shared bytes [off, off + bytes).
  void track(const Thread &t, uint64_t off, size_t bytes, bool write, const Inst &in,
             bool record = true) {
    Access me{epoch, index(t), int(t.warp), warpEpochs[t.warp]};
    if (write)
      checkNotReadByWgmma(off, bytes, in);
    for (uint64_t b = off; b < off + bytes; ++b) {
      if (inFlight[b] >= 0 && (inFlight[b] != me.thread || !write))
        error(in, "shared memory race: thread " + std::to_string(me.thread) + " " +
                      (write ? "writes" : "reads") + " byte " + std::to_string(b) +
                      " while a cp.async of thread " + std::to_string(inFlight[b]) +
                      " into it is in flight (before its cp.async.wait_group)");
      Access &w = lastWrite[b], &r = lastRead[b];
      if (!ordered(w, t))
        race(t, w, b, write ? "writes" : "reads", "wrote", in);
      if (write) {
        if (!ordered(r, t))
          race(t, r, b, "writes", "read", in);
        if (record)
          w = me;
      } else if (record) {
        if (r.epoch != epoch || r.thread == me.thread) {
          r = me;
        } else {
          if (r.thread != me.thread)
            r.thread = -2;
          if (r.warp != me.warp)
            r.warp = -2;
          r.warpEpoch = std::max(r.warpEpoch, me.warpEpoch);
        }
      }
    }
  }

  [[noreturn]] void error(const Inst &in, const std::string &what) {
    fail(in.line, what + " (in '" + in.text + "', block (" + std::to_string(ctaid[0]) + ", " +
                      std::to_string(ctaid[1]) + ", " + std::to_string(ctaid[2]) + "))");
  }

  uint64_t special(const Thread &t, int s) const {
    switch (s) {
    case TidX: return t.tid[0];
    case TidY: return t.tid[1];
    case TidZ: return t.tid[2];
    case NtidX: return block[0];
    case NtidY: return block[1];
    case NtidZ: return block[2];
    case CtaidX: return ctaid[0];
    case CtaidY: return ctaid[1];
    case CtaidZ: return ctaid[2];
    case NctaidX: return grid[0];
    case NctaidY: return grid[1];
    case NctaidZ: return grid[2];
    case LaneId: return t.lane;
    case WarpId: return t.warp;
    }
    return 0;
  }

  uint64_t value(const Thread &t, const Operand &o, const Inst &in) {
    switch (o.kind) {
    case Kind::Reg: {
      if (t.lockedRegs && t.pendingWrites[size_t(o.reg)])
        error(in, "reads a wgmma accumulator register before the wgmma.wait_group that "
                  "completes it");
      uint64_t v = t.r[size_t(o.reg)];
      return o.negate ? !v : v;
    }
    case Kind::Imm: {
      if (o.immFloat && in.t.c == 'f' && in.t.bits == 32 && (o.imm >> 32))
        return fromF32(float(asF64(o.imm))); // a 0d constant of an f32 op
      return o.imm;
    }
    case Kind::Sym:
      if (o.param) // a parameter's (generic) address: sm_90's tensor maps
        return kGenericParam + o.imm;
      return o.dynamicShared ? kSharedWindow + dynamicBase : o.imm;
    case Kind::Special: return special(t, o.special);
    default: error(in, "unexpected operand");
    }
  }

  /// Sign- or zero-extends the low `bits` of v by the type.
  static int64_t sext(uint64_t v, int bits) {
    if (bits >= 64)
      return int64_t(v);
    uint64_t m = uint64_t(1) << (bits - 1);
    v &= (uint64_t(1) << bits) - 1;
    return int64_t((v ^ m) - m);
  }
  static uint64_t zext(uint64_t v, int bits) {
    return bits >= 64 ? v : v & ((uint64_t(1) << bits) - 1);
  }

  // Memory.
  uint8_t *sharedAt(uint64_t addr, size_t bytes, const Inst &in) {
    uint64_t off = addr - kSharedWindow;
    if (addr < kSharedWindow || off + bytes > shared.size())
      error(in, "shared memory access at offset " + std::to_string(int64_t(off)) + " of " +
                    std::to_string(bytes) + " bytes outside the block's " +
                    std::to_string(shared.size()) + " bytes");
    return shared.data() + off;
  }
  /// The shared-memory offset an access of `space` at `addr` reaches (a
  /// .shared address, or a generic one in shared memory's window), if any.
  std::optional<uint64_t> sharedOffset(char space, uint64_t addr) const {
    if (space == 's')
      return addr - kSharedWindow;
    if (space == ' ' && addr >= kGenericShared && addr < kGenericShared + shared.size())
      return addr - kGenericShared;
    return std::nullopt;
  }
  uint8_t *localAt(Thread &t, uint64_t addr, size_t bytes, const Inst &in) {
    uint64_t off = addr - kLocalWindow;
    if (addr < kLocalWindow || off + bytes > t.local.size())
      error(in, "local memory access outside the thread's frame");
    return t.local.data() + off;
  }
  uint8_t *memAt(Thread &t, char space, uint64_t addr, size_t bytes, const Inst &in) {
    switch (space) {
    case 's': return sharedAt(addr, bytes, in);
    case 'l': return localAt(t, addr, bytes, in);
    case 'p':
      if (addr + bytes > params.size())
        error(in, "parameter read outside the parameters");
      return params.data() + addr;
    case ' ':
      if (addr >= kLocalWindow && addr < kLocalWindow + t.local.size())
        return localAt(t, addr, bytes, in);
      if (addr >= kGenericShared && addr < kGenericShared + shared.size())
        return sharedAt(addr - kGenericShared + kSharedWindow, bytes, in);
      if (addr >= kGenericParam && addr < kGenericParam + params.size()) {
        if (addr + bytes > kGenericParam + params.size())
          error(in, "parameter read outside the parameters");
        return params.data() + (addr - kGenericParam);
      }
      [[fallthrough]];
    default:
      if (addr < 4096)
        error(in, "global access at address " + std::to_string(addr) + " (null pointer)");
      if (!globalAllocations.empty()) {
        auto it = globalAllocations.upper_bound(uintptr_t(addr));
        if (it == globalAllocations.begin() ||
            uintptr_t(addr) + bytes > std::prev(it)->first + std::prev(it)->second)
          error(in, "global access of " + std::to_string(bytes) +
                        " bytes outside every device allocation (at 0x" +
                        [&] {
                          char b[32];
                          std::snprintf(b, sizeof b, "%llx", (unsigned long long)addr);
                          return std::string(b);
                        }() +
                        ")");
      }
      return reinterpret_cast<uint8_t *>(uintptr_t(addr));
    }
  }
  uint64_t address(const Thread &t, const Operand &o, const Inst &in) {
    if (o.kind != Kind::Mem)
      error(in, "expected an address");
    uint64_t base = o.reg >= 0                ? t.r[size_t(o.reg)]
                    : o.dynamicShared ? kSharedWindow + dynamicBase
                                      : 0;
    return base + o.imm;
  }

  static uint64_t load(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    std::memcpy(&v, p, size_t(bytes));
    return v;
  }
  static void store(uint8_t *p, uint64_t v, int bytes) { std::memcpy(p, &v, size_t(bytes)); }

  const Inst *current = nullptr; // the instruction being executed (for errors)
  void set(Thread &t, const Operand &o, uint64_t v) {
    if (o.kind != Kind::Reg)
      error(*current, "the destination is not a register");
    if (t.lockedRegs && t.pendingWrites[size_t(o.reg)])
      error(*current, "writes a wgmma accumulator register before the wgmma.wait_group that "
                      "completes it");
    t.r[size_t(o.reg)] = v;
  }

  // Floating point with a rounding mode.
  template <typename F> static float rounded(int mode, F f) {
    if (mode == FE_TONEAREST)
      return f();
    int old = std::fegetround();
    std::fesetround(mode);
    volatile float r = f();
    std::fesetround(old);
    return r;
  }

  void exec(Thread &t, const Inst &in);
  void collective(std::vector<Thread *> &lanes, const Inst &in);
  void cpWait(Thread &t, int keep);
  void runBlock();
};

// setp's comparisons, decoded once: the code's low bits the relation, 16 the
// unordered-true float form (equ, ltu, ...), 32 unsigned integer forms.
enum : int { CmpEq = 1, CmpNe, CmpLt, CmpLe, CmpGt, CmpGe, CmpNan, CmpNum, CmpU = 16, CmpUnsigned = 32 };
int compareCode(const std::string &cmp, int line) {
  static const std::pair<const char *, int> codes[] = {
      {"eq", CmpEq}, {"ne", CmpNe}, {"lt", CmpLt}, {"le", CmpLe}, {"gt", CmpGt}, {"ge", CmpGe},
      {"lo", CmpLt | CmpUnsigned}, {"ls", CmpLe | CmpUnsigned}, {"hi", CmpGt | CmpUnsigned},
      {"hs", CmpGe | CmpUnsigned}, {"equ", CmpEq | CmpU}, {"neu", CmpNe | CmpU},
      {"ltu", CmpLt | CmpU}, {"leu", CmpLe | CmpU}, {"gtu", CmpGt | CmpU}, {"geu", CmpGe | CmpU},
      {"nan", CmpNan}, {"num", CmpNum}};
  for (auto [name, code] : codes)
    if (cmp == name)
      return code;
  fail(line, "unknown comparison " + cmp);
}

/// x rel y for an ordered relation (eq, ne, lt, le, gt, ge).
template <typename T> bool relate(int rel, T x, T y) {
  switch (rel) {
  case CmpEq: return x == y;
  case CmpNe: return x != y;
  case CmpLt: return x < y;
  case CmpLe: return x <= y;
  case CmpGt: return x > y;
  default: return x >= y;
  }
}

bool compare(int code, const Type &t, uint64_t a, uint64_t b) {
  int rel = code & 15;
  if (t.c == 'f') {
    double x = t.bits == 64 ? asF64(a) : asF32(a), y = t.bits == 64 ? asF64(b) : asF32(b);
    bool unordered = std::isnan(x) || std::isnan(y);
    if (rel == CmpNan)
      return unordered;
    if (rel == CmpNum)
      return !unordered;
    if (unordered)
      return code & CmpU;
    return relate(rel, x, y);
  }
  if (t.c == 'p')
    return rel == CmpEq ? (a != 0) == (b != 0) : (a != 0) != (b != 0);
  if (t.c == 's' && !(code & CmpUnsigned)) {
    return relate(rel, Launch::sext(a, t.bits), Launch::sext(b, t.bits));
  }
  return relate(rel, Launch::zext(a, t.bits), Launch::zext(b, t.bits));
}

void Launch::exec(Thread &t, const Inst &in) {
  current = &in;
  const Type &ty = in.t;
  const std::vector<Operand> &o = in.ops;
  auto v = [&](size_t i) { return value(t, o.at(i), in); };
  auto f32 = [&](size_t i) { return asF32(v(i)); };
  bool isF = ty.c == 'f';
  bool f64 = isF && ty.bits == 64;
  int bits = ty.bits;
  auto setInt = [&](uint64_t x) { set(t, o[0], zext(x, bits)); };
  auto setF = [&](double x) { set(t, o[0], f64 ? fromF64(x) : fromF32(float(x))); };
  switch (in.op) {
  case Op::Nop:
    break;
  case Op::FenceProxyAsync:
    ++proxyFences[size_t(index(t))];
    break;
  case Op::Add:
  case Op::Sub:
    if (isF && ty.x2)
      error(in, "packed half arithmetic is not supported by the emulator");
    if (f64)
      setF(in.op == Op::Add ? asF64(v(1)) + asF64(v(2)) : asF64(v(1)) - asF64(v(2)));
    else if (isF) {
      float a = f32(1), b = f32(2);
      float r = rounded(in.fround, [&] { return in.op == Op::Add ? a + b : a - b; });
      if (in.sat)
        r = std::isnan(r) ? 0.f : std::fmin(std::fmax(r, 0.f), 1.f);
      setF(r);
    } else
      setInt(in.op == Op::Add ? v(1) + v(2) : v(1) - v(2));
    break;
  case Op::Mul:
    if (f64)
      setF(asF64(v(1)) * asF64(v(2)));
    else if (isF) {
      float a = f32(1), b = f32(2);
      setF(rounded(in.fround, [&] { return a * b; }));
    } else if (in.wide) {
      if (ty.c == 's')
        set(t, o[0], uint64_t(sext(v(1), bits) * sext(v(2), bits)));
      else
        set(t, o[0], zext(v(1), bits) * zext(v(2), bits));
    } else if (in.hi) {
      if (bits == 64) {
        if (ty.c == 's')
          set(t, o[0], uint64_t((__int128(int64_t(v(1))) * __int128(int64_t(v(2)))) >> 64));
        else
          set(t, o[0],
              uint64_t((unsigned __int128)(v(1)) * (unsigned __int128)(v(2)) >> 64));
      } else {
        uint64_t p = ty.c == 's' ? uint64_t(sext(v(1), bits) * sext(v(2), bits))
                                 : zext(v(1), bits) * zext(v(2), bits);
        setInt(p >> bits);
      }
    } else
      setInt(v(1) * v(2));
    break;
  case Op::Mad:
    if (isF)
      error(in, "mad on floats is not supported by the emulator");
    if (in.wide) {
      uint64_t p = ty.c == 's' ? uint64_t(sext(v(1), bits) * sext(v(2), bits))
                               : zext(v(1), bits) * zext(v(2), bits);
      set(t, o[0], p + v(3));
    } else if (in.hi) {
      error(in, "mad.hi is not supported by the emulator");
    } else
      setInt(v(1) * v(2) + v(3));
    break;
  case Op::Div:
    if (f64)
      setF(asF64(v(1)) / asF64(v(2)));
    else if (isF)
      setF(f32(1) / f32(2));
    else {
      if (zext(v(2), bits) == 0)
        error(in, "integer division by zero");
      if (ty.c == 's' && sext(v(2), bits) == -1)
        setInt(uint64_t(-sext(v(1), bits))); // INT_MIN / -1 wraps, as on the GPU
      else if (ty.c == 's')
        setInt(uint64_t(sext(v(1), bits) / sext(v(2), bits)));
      else
        setInt(zext(v(1), bits) / zext(v(2), bits));
    }
    break;
  case Op::Rem:
    if (zext(v(2), bits) == 0)
      error(in, "integer remainder by zero");
    if (ty.c == 's' && sext(v(2), bits) == -1)
      setInt(0);
    else if (ty.c == 's')
      setInt(uint64_t(sext(v(1), bits) % sext(v(2), bits)));
    else
      setInt(zext(v(1), bits) % zext(v(2), bits));
    break;
  case Op::Min:
  case Op::Max: {
    bool mx = in.op == Op::Max;
    if (isF) {
      double a = f64 ? asF64(v(1)) : f32(1), b = f64 ? asF64(v(2)) : f32(2);
      double r;
      if (std::isnan(a) || std::isnan(b))
        r = in.nanProp ? std::nan("") : (std::isnan(a) ? b : a);
      else if (a == 0 && b == 0)
        r = mx ? (std::signbit(a) ? b : a) : (std::signbit(a) ? a : b);
      else
        r = mx ? std::max(a, b) : std::min(a, b);
      setF(r);
    } else if (ty.c == 's') {
      int64_t a = sext(v(1), bits), b = sext(v(2), bits);
      setInt(uint64_t(mx ? std::max(a, b) : std::min(a, b)));
    } else {
      uint64_t a = zext(v(1), bits), b = zext(v(2), bits);
      setInt(mx ? std::max(a, b) : std::min(a, b));
    }
    break;
  }
  case Op::Neg:
    if (isF)
      set(t, o[0], f64 ? v(1) ^ (uint64_t(1) << 63) : uint32_t(v(1)) ^ 0x80000000u);
    else
      setInt(uint64_t(-sext(v(1), bits)));
    break;
  case Op::Abs:
    if (isF)
      set(t, o[0], f64 ? v(1) & ~(uint64_t(1) << 63) : uint32_t(v(1)) & 0x7fffffffu);
    else
      setInt(uint64_t(std::llabs(sext(v(1), bits))));
    break;
  case Op::And:
  case Op::Or:
  case Op::Xor: {
    uint64_t a = v(1), b = v(2);
    uint64_t r = in.op == Op::And ? a & b : in.op == Op::Or ? a | b : a ^ b;
    set(t, o[0], ty.c == 'p' ? (r & 1) : zext(r, bits));
    break;
  }
  case Op::Not:
    set(t, o[0], ty.c == 'p' ? !v(1) : zext(~v(1), bits));
    break;
  case Op::Shl:
  case Op::Shr: {
    uint64_t s = zext(v(2), 32);
    uint64_t a = v(1);
    uint64_t r;
    if (in.op == Op::Shl)
      r = s >= uint64_t(bits) ? 0 : a << s;
    else if (ty.c == 's')
      r = uint64_t(sext(a, bits) >> std::min<uint64_t>(s, uint64_t(bits - 1)));
    else
      r = s >= uint64_t(bits) ? 0 : zext(a, bits) >> s;
    setInt(r);
    break;
  }
  case Op::Setp: {
    bool r = compare(in.cmpCode, ty, v(1), v(2));
    if (!in.combine.empty()) {
      bool c = v(3) != 0;
      r = in.combine == "and" ? (r && c) : in.combine == "or" ? (r || c) : (r != c);
    }
    set(t, o[0], r);
    if (o[0].reg2 >= 0) {
      bool n = !compare(in.cmpCode, ty, v(1), v(2));
      if (!in.combine.empty()) {
        bool c = v(3) != 0;
        n = in.combine == "and" ? (n && c) : in.combine == "or" ? (n || c) : (n != c);
      }
      t.r[size_t(o[0].reg2)] = n;
    }
    break;
  }
  case Op::Selp:
    set(t, o[0], v(3) ? v(1) : v(2));
    break;
  case Op::Mov:
    if (o[0].kind == Kind::Vec) { // unpack
      uint64_t x = v(1);
      int n = int(o[0].regs.size()), w = bits / n;
      for (int i = 0; i < n; ++i)
        if (o[0].regs[size_t(i)] >= 0)
          t.r[size_t(o[0].regs[size_t(i)])] = zext(x >> (i * w), w);
    } else if (o[1].kind == Kind::Vec) { // pack
      int n = int(o[1].regs.size()), w = bits / n;
      uint64_t x = 0;
      for (int i = 0; i < n; ++i)
        x |= zext(t.r[size_t(o[1].regs[size_t(i)])], w) << (i * w);
      set(t, o[0], x);
    } else {
      uint64_t x = v(1);
      if (o[1].kind == Kind::Imm && o[1].immFloat && bits == 32 && (o[1].imm >> 32))
        x = fromF32(float(asF64(o[1].imm)));
      set(t, o[0], ty.c == 'p' ? (x & 1) : zext(x, bits));
    }
    break;
  case Op::Cvt: {
    const Type &d = in.t, &s = in.t2;
    uint64_t x = v(1);
    if (d.c == 'f' && d.x2) { // cvt.rn.{bf16x2,f16x2}.f32 d, a, b: a in the upper half
      float a = f32(1), b = f32(2);
      uint16_t ha = d.bf ? f32ToBF16(a) : f32ToF16(a), hb = d.bf ? f32ToBF16(b) : f32ToF16(b);
      set(t, o[0], (uint64_t(ha) << 16) | hb);
      break;
    }
    double val = 0;
    bool fromFloat = s.c == 'f';
    if (fromFloat)
      val = s.bits == 64   ? asF64(x)
            : s.bits == 32 ? asF32(x)
            : s.bf         ? bf16ToF32(uint16_t(x))
                           : f16ToF32(uint16_t(x));
    if (d.c == 'f') {
      if (!fromFloat)
        val = s.c == 's' ? double(sext(x, s.bits)) : double(zext(x, s.bits));
      if (in.sat)
        val = std::isnan(val) ? 0.0 : std::fmin(std::fmax(val, 0.0), 1.0);
      if (fromFloat && in.rnd.size() == 3) // rni rzi rmi rpi: to an integral value
        val = in.rnd == "rni"   ? std::nearbyint(val)
              : in.rnd == "rzi" ? std::trunc(val)
              : in.rnd == "rmi" ? std::floor(val)
                                : std::ceil(val);
      if (d.bits == 64)
        set(t, o[0], fromF64(val));
      else if (d.bits == 32) {
        float r = rounded(in.rnd.size() == 2 ? in.fround : FE_TONEAREST,
                          [&] { return float(val); });
        set(t, o[0], fromF32(r));
      } else
        set(t, o[0], d.bf ? f32ToBF16(float(val)) : f32ToF16(float(val)));
    } else if (fromFloat) { // float -> int
      double r = val;
      if (in.rnd == "rni" || in.rnd.empty())
        r = std::nearbyint(val);
      else if (in.rnd == "rzi")
        r = std::trunc(val);
      else if (in.rnd == "rmi")
        r = std::floor(val);
      else if (in.rnd == "rpi")
        r = std::ceil(val);
      if (std::isnan(r))
        r = 0;
      double lo = d.c == 's' ? -std::ldexp(1.0, d.bits - 1) : 0;
      double hi = d.c == 's' ? std::ldexp(1.0, d.bits - 1) - 1 : std::ldexp(1.0, d.bits) - 1;
      r = std::fmin(std::fmax(r, lo), hi);
      set(t, o[0], zext(d.c == 's' ? uint64_t(int64_t(r)) : uint64_t(r), d.bits));
    } else { // int -> int
      uint64_t r = s.c == 's' ? uint64_t(sext(x, s.bits)) : zext(x, s.bits);
      if (in.sat)
        error(in, "saturating integer conversion is not supported by the emulator");
      set(t, o[0], zext(r, d.bits));
    }
    break;
  }
  case Op::Cvta: {
    // Global, local and parameter addresses are their own generic ones;
    // shared memory's generic window is kGenericShared.
    bool to = false, sharedSpace = false;
    for (const std::string &m : in.mods) {
      to = to || m == "to";
      sharedSpace = sharedSpace || m == "shared" || m == "shared::cta" || m == "shared::cluster";
    }
    uint64_t x = v(1);
    if (sharedSpace && to) {
      if (x < kGenericShared || x >= kGenericShared + shared.size())
        error(in, "cvta.to.shared of an address outside shared memory");
      x = x - kGenericShared + kSharedWindow;
    } else if (sharedSpace) {
      x = x - kSharedWindow + kGenericShared;
    }
    set(t, o[0], zext(x, bits));
    break;
  }
  case Op::Ld:
  case Op::St: {
    bool ld = in.op == Op::Ld;
    const Operand &mem = ld ? o[1] : o[0];
    const Operand &val = ld ? o[0] : o[1];
    int bytes = std::max(1, bits / 8);
    uint64_t addr = address(t, mem, in);
    if (addr % uint64_t(bytes * in.vec))
      error(in, "misaligned " + std::to_string(bytes * in.vec) + "-byte access");
    uint8_t *p = memAt(t, in.space, addr, size_t(bytes * in.vec), in);
    if (std::optional<uint64_t> off = sharedOffset(in.space, addr)) {
      track(t, *off, size_t(bytes * in.vec), !ld, in);
      if (!ld)
        markGeneric(t, *off, size_t(bytes * in.vec));
    }
    if (in.vec == 1) {
      if (ld) {
        uint64_t x = load(p, bytes);
        if (ty.c == 's')
          x = zext(uint64_t(sext(x, bits)), 64);
        set(t, val, x);
      } else {
        store(p, value(t, val, in), bytes);
      }
    } else {
      if (val.kind != Kind::Vec || int(val.regs.size()) != in.vec)
        error(in, "vector access without a vector operand");
      for (int i = 0; i < in.vec; ++i) {
        int reg = val.regs[size_t(i)];
        if (reg >= 0 && t.lockedRegs && t.pendingWrites[size_t(reg)])
          error(in, std::string(ld ? "writes" : "reads") +
                        " a wgmma accumulator register before the wgmma.wait_group that "
                        "completes it");
        if (ld) {
          if (reg == -2)
            error(in, "an immediate in a load's destination vector");
          if (reg >= 0)
            t.r[size_t(reg)] = load(p + i * bytes, bytes);
        } else {
          store(p + i * bytes,
                reg >= 0 ? t.r[size_t(reg)] : reg == -2 ? val.vecImms[size_t(i)] : 0, bytes);
        }
      }
    }
    break;
  }
  case Op::Atom:
  case Op::Red: {
    bool atom = in.op == Op::Atom;
    const Operand &mem = atom ? o[1] : o[0];
    size_t a = atom ? 2 : 1;
    int bytes = bits / 8;
    uint64_t at = address(t, mem, in);
    if (at % uint64_t(bytes))
      error(in, "misaligned atomic");
    uint8_t *p = memAt(t, in.space, at, size_t(bytes), in);
    if (std::optional<uint64_t> off = sharedOffset(in.space, at))
      markGeneric(t, *off, size_t(bytes));
    uint64_t old = load(p, bytes), x = v(a), r = old;
    const std::string &op = in.cmp;
    if (op == "add")
      r = isF ? (f64 ? fromF64(asF64(old) + asF64(x)) : fromF32(asF32(old) + asF32(x)))
              : old + x;
    else if (op == "exch")
      r = x;
    else if (op == "cas")
      r = zext(old, bits) == zext(x, bits) ? v(a + 1) : old;
    else if (op == "and")
      r = old & x;
    else if (op == "or")
      r = old | x;
    else if (op == "xor")
      r = old ^ x;
    else if (op == "min" || op == "max") {
      bool mx = op == "max";
      if (isF)
        error(in, "atomic float min/max is not supported by the emulator");
      if (ty.c == 's')
        r = uint64_t(mx ? std::max(sext(old, bits), sext(x, bits))
                        : std::min(sext(old, bits), sext(x, bits)));
      else
        r = mx ? std::max(zext(old, bits), zext(x, bits)) : std::min(zext(old, bits), zext(x, bits));
    } else
      error(in, "atomic operation '" + op + "' is not supported by the emulator");
    store(p, r, bytes);
    if (atom)
      set(t, o[0], old);
    break;
  }
  case Op::Fma: {
    if (f64) {
      setF(std::fma(asF64(v(1)), asF64(v(2)), asF64(v(3))));
      break;
    }
    float a = f32(1), b = f32(2), c = f32(3);
    float r = rounded(in.fround, [&] { return std::fma(a, b, c); });
    if (in.sat)
      r = std::isnan(r) ? 0.f : std::fmin(std::fmax(r, 0.f), 1.f);
    setF(r);
    break;
  }
  case Op::Ex2: setF(std::exp2(f32(1))); break;
  case Op::Lg2: setF(std::log2(f32(1))); break;
  case Op::Rcp: f64 ? setF(1.0 / asF64(v(1))) : setF(1.f / f32(1)); break;
  case Op::Sqrt: f64 ? setF(std::sqrt(asF64(v(1)))) : setF(std::sqrt(f32(1))); break;
  case Op::Rsqrt: setF(1.f / std::sqrt(f32(1))); break;
  case Op::Tanh: setF(std::tanh(f32(1))); break;
  case Op::Sin: setF(std::sin(f32(1))); break;
  case Op::Cos: setF(std::cos(f32(1))); break;
  case Op::Copysign:
    setF(std::copysign(f32(2), f32(1)));
    break;
  case Op::Testp: {
    float x = f32(1);
    const std::string &m = in.mods.at(0);
    bool r = m == "finite"      ? std::isfinite(x)
             : m == "infinite"  ? std::isinf(x)
             : m == "number"    ? !std::isnan(x)
             : m == "notanumber" ? std::isnan(x)
             : m == "normal"    ? std::isnormal(x)
                                : (x != 0 && !std::isnormal(x) && std::isfinite(x));
    set(t, o[0], r);
    break;
  }
  case Op::Bfe: {
    uint64_t a = v(1), pos = zext(v(2), 8), len = zext(v(3), 8);
    uint64_t r = 0;
    for (uint64_t i = 0; i < len && i < uint64_t(bits); ++i) {
      uint64_t bit = pos + i < uint64_t(bits) ? (a >> (pos + i)) & 1
                     : ty.c == 's'          ? (a >> (bits - 1)) & 1
                                            : 0;
      r |= bit << i;
    }
    if (ty.c == 's' && len > 0 && len < uint64_t(bits)) {
      uint64_t sign = pos + len - 1 < uint64_t(bits) ? (a >> (pos + len - 1)) & 1
                                                   : (a >> (bits - 1)) & 1;
      if (sign)
        r |= ~uint64_t(0) << len;
    }
    setInt(r);
    break;
  }
  case Op::Bfi: {
    uint64_t a = v(1), b = v(2), pos = zext(v(3), 8), len = zext(v(4), 8);
    uint64_t r = b;
    for (uint64_t i = 0; i < len && pos + i < uint64_t(bits); ++i)
      r = (r & ~(uint64_t(1) << (pos + i))) | (((a >> i) & 1) << (pos + i));
    setInt(r);
    break;
  }
  case Op::Popc: set(t, o[0], uint64_t(__builtin_popcountll(zext(v(1), bits)))); break;
  case Op::Clz: {
    uint64_t x = zext(v(1), bits);
    set(t, o[0], x == 0 ? uint64_t(bits) : uint64_t(__builtin_clzll(x) - (64 - bits)));
    break;
  }
  case Op::Brev: {
    uint64_t x = v(1), r = 0;
    for (int i = 0; i < bits; ++i)
      r |= ((x >> i) & 1) << (bits - 1 - i);
    setInt(r);
    break;
  }
  case Op::Prmt: {
    if (!in.mods.empty())
      error(in, "prmt modes are not supported by the emulator");
    uint64_t bytes = (zext(v(2), 32) << 32) | zext(v(1), 32);
    uint32_t sel = uint32_t(v(3)), r = 0;
    for (int i = 0; i < 4; ++i) {
      uint32_t s = (sel >> (4 * i)) & 0xf;
      uint32_t byte = uint32_t(bytes >> (8 * (s & 7))) & 0xff;
      if (s & 8)
        byte = (byte & 0x80) ? 0xff : 0;
      r |= byte << (8 * i);
    }
    set(t, o[0], r);
    break;
  }
  case Op::Shf: {
    bool left = in.mods.at(0) == "l", clamp = in.mods.size() > 1 && in.mods[1] == "clamp";
    uint64_t lo = zext(v(1), 32), hi = zext(v(2), 32), n = zext(v(3), 32);
    n = clamp ? std::min<uint64_t>(n, 32) : n & 31;
    uint64_t both = (hi << 32) | lo;
    set(t, o[0], left ? zext((both << n) >> 32, 32) : zext(both >> n, 32));
    break;
  }
  case Op::Lop3: {
    uint32_t a = uint32_t(v(1)), b = uint32_t(v(2)), c = uint32_t(v(3)),
             lut = uint32_t(v(4)), r = 0;
    for (int i = 0; i < 32; ++i) {
      uint32_t idx = (((a >> i) & 1) << 2) | (((b >> i) & 1) << 1) | ((c >> i) & 1);
      r |= ((lut >> idx) & 1) << i;
    }
    set(t, o[0], r);
    break;
  }
  case Op::CpAsync: {
    // cp.async.{ca,cg}.shared.global [dst], [src], cp-size{, src-size}
    uint64_t dst = address(t, o[0], in);
    uint64_t src = address(t, o[1], in);
    if (o.size() > 4 || (o.size() == 4 && o[3].kind == Kind::Reg && o[3].predicate))
      error(in, "cp.async with ignore-src or a cache policy is not supported by the emulator");
    unsigned bytes = unsigned(v(2)), srcBytes = o.size() > 3 ? unsigned(v(3)) : bytes;
    if (dst % bytes || src % bytes)
      error(in, "cp.async addresses not aligned to the copy size");
    if (srcBytes > bytes)
      error(in, "cp.async src-size larger than cp-size");
    sharedAt(dst, bytes, in); // checked now, written at the wait
    // The copy may land any time until its wait: a read by another thread
    // in this interval races with it.
    track(t, dst - kSharedWindow, bytes, /*write=*/true, in, /*record=*/false);
    for (uint64_t b = dst - kSharedWindow; b < dst - kSharedWindow + bytes; ++b)
      inFlight[b] = index(t);
    const uint8_t *from = srcBytes ? memAt(t, 'g', src, srcBytes, in) : nullptr;
    t.pending.push_back({dst, from, bytes, srcBytes, &in});
    break;
  }
  case Op::BarArrive: {
    if (o.size() < 2)
      error(in, "bar.arrive without a thread count");
    arrive(unsigned(v(0)), unsigned(v(1)), in);
    break;
  }
  case Op::MbarInit: {
    uint64_t off = address(t, o[0], in) - kSharedWindow;
    sharedAt(off + kSharedWindow, 8, in);
    if (off % 8)
      error(in, "a misaligned mbarrier");
    Mbarrier m;
    m.expected = m.pending = uint32_t(v(1));
    if (!m.expected)
      error(in, "an mbarrier with an arrival count of 0");
    // (PTX ISA: init on a valid mbarrier object is undefined; inval first.)
    if (mbarriers.count(off))
      error(in, "mbarrier.init of a valid mbarrier: mbarrier.inval it first");
    mbarriers[off] = m;
    markGeneric(t, off, 8);
    break;
  }
  case Op::MbarInval: {
    uint64_t off = address(t, o[0], in) - kSharedWindow;
    Mbarrier &m = mbarrierAt(off, in);
    for (const TmaCopy &c : tmaInFlight)
      if (c.mbar == off)
        error(in, "mbarrier.inval of an mbarrier a TMA copy in flight completes on");
    if (m.pending != m.expected || m.tx != 0)
      error(in, "mbarrier.inval of an mbarrier whose phase is under way (arrivals or "
                "transaction bytes pending)");
    mbarriers.erase(off);
    break;
  }
  case Op::MbarArrive: {
    // mbarrier.arrive{.expect_tx}.shared.b64 state, [addr]{, txCount}
    size_t mem = 0;
    while (mem < o.size() && o[mem].kind != Kind::Mem)
      ++mem;
    if (mem == o.size())
      error(in, "mbarrier.arrive without an address");
    uint64_t off = address(t, o[mem], in) - kSharedWindow;
    Mbarrier &m = mbarrierAt(off, in);
    if (in.count == 1) // expect_tx
      m.tx += int64_t(value(t, o.at(mem + 1), in));
    else if (o.size() > mem + 1)
      error(in, "mbarrier.arrive with a count is not supported by the emulator");
    if (m.pending == 0)
      error(in, "an mbarrier arrival beyond its count");
    --m.pending;
    uint64_t state = m.phase;
    completeIfDone(m, off, in);
    if (mem > 0 && o[0].kind == Kind::Reg)
      set(t, o[0], state);
    break;
  }
  case Op::Tma:
    tma(t, in);
    break;
  case Op::WgCommit:
    t.wgGroups.push_back(std::move(t.wgUncommitted));
    t.wgUncommitted.clear();
    t.wgGroupBytes.push_back(std::move(t.wgUncommittedBytes));
    t.wgUncommittedBytes.clear();
    break;
  case Op::WgWait: {
    size_t keep = size_t(v(0));
    while (t.wgGroups.size() > keep) {
      for (int r : t.wgGroups.front())
        if (--t.pendingWrites[size_t(r)] == 0) {
          t.r[size_t(r)] = t.shadow[size_t(r)];
          --t.lockedRegs;
        }
      t.wgGroups.erase(t.wgGroups.begin());
      for (uint32_t off : t.wgGroupBytes.front()) {
        wgmmaReaders[off]--;
        wgmmaReaders[off + 1]--;
      }
      t.wgGroupBytes.erase(t.wgGroupBytes.begin());
    }
    break;
  }
  case Op::CpCommit:
    t.groups.push_back(std::move(t.pending));
    t.pending.clear();
    break;
  case Op::CpWait:
    cpWait(t, in.count < 0 ? 0 : int(v(0)));
    if (in.count < 0) { // wait_all: the uncommitted copies too
      t.groups.push_back(std::move(t.pending));
      t.pending.clear();
      cpWait(t, 0);
    }
    break;
  case Op::MbarTryWait:
  case Op::Wgmma:
  case Op::Bra:
  case Op::Ret:
  case Op::Mma:
  case Op::Ldmatrix:
  case Op::Shfl:
  case Op::Vote:
  case Op::Bar:
  case Op::WarpSync:
  case Op::Activemask:
    error(in, "internal: control or collective instruction in exec");
  }
}

void Launch::cpWait(Thread &t, int keep) {
  while (int(t.groups.size()) > keep) {
    for (const Thread::Copy &c : t.groups.front()) {
      uint8_t *d = shared.data() + (c.dst - kSharedWindow);
      for (uint64_t b = c.dst - kSharedWindow; b < c.dst - kSharedWindow + c.bytes; ++b)
        inFlight[b] = -1;
      track(t, c.dst - kSharedWindow, c.bytes, /*write=*/true, *c.issue);
      markGeneric(t, c.dst - kSharedWindow, c.bytes); // (cp.async: the generic proxy)
      if (c.srcBytes)
        std::memcpy(d, c.src, c.srcBytes);
      std::memset(d + c.srcBytes, 0, c.bytes - c.srcBytes);
    }
    t.groups.erase(t.groups.begin());
  }
}

// ---------------------------------------------------------------------------
// sm_90: TMA, mbarriers, wgmma.

PtxemuTensorMapResolver tensorMapResolver = nullptr;

/// The byte offset a swizzle mode (0, 32, 64, 128 bytes) moves `off` to:
/// its 16-byte chunk index XORed with bits 7.. of the offset (CUTLASS's
/// Swizzle<1|2|3, 4, 3>), relative to 1024-byte aligned shared memory.
uint64_t swizzled(uint64_t off, int swizzle) {
  if (!swizzle)
    return off;
  uint64_t mask = uint64_t(swizzle / 16 - 1);
  return off ^ (((off >> 7) & mask) << 4);
}

void Launch::tma(Thread &t, const Inst &in) {
  // cp.async.bulk.tensor.Nd.shared::cluster.global.tile.mbarrier::complete_tx::bytes
  //   [dst], [map, {c0, ...}], [mbar]
  const std::vector<Operand> &o = in.ops;
  if (o.size() != 3 || int(o[1].regs.size()) != in.count)
    error(in, "unexpected TMA operands");
  uint64_t dst = address(t, o[0], in) - kSharedWindow;
  uint64_t mbar = address(t, o[2], in) - kSharedWindow;
  mbarrierAt(mbar, in);
  checkFenced(mbar, 8, in, "a TMA completes on the mbarrier at");
  uint64_t mapAt = t.r[size_t(o[1].reg)];
  const uint8_t *map = memAt(t, ' ', mapAt, 128, in);
  PtxemuTensorMap m;
  if (!tensorMapResolver || tensorMapResolver(map, &m))
    error(in, "a tensor map the driver did not encode");
  if (m.rank != unsigned(in.count))
    error(in, "a " + std::to_string(in.count) + "-d copy with a rank-" + std::to_string(m.rank) +
                  " tensor map");
  size_t elt = m.elementBytes;
  int swizzle = m.swizzle == 0 ? 0 : m.swizzle == 1 ? 32 : m.swizzle == 2 ? 64 : 128;
  size_t inner = m.box[0] * elt;
  if (inner % 16 || (swizzle && inner > size_t(swizzle)))
    error(in, "a TMA box whose inner dimension is " + std::to_string(inner) +
                  " bytes (a multiple of 16, at most the swizzle span " +
                  std::to_string(swizzle) + ")");
  if (dst % 128)
    error(in, "a TMA destination not aligned to 128 bytes (shared offset " +
                  std::to_string(dst) + ")");
  if (m.swizzle > 3)
    error(in, "tensor map swizzle mode " + std::to_string(m.swizzle));
  int64_t coord[5] = {0, 0, 0, 0, 0};
  size_t volume = 1;
  for (unsigned d = 0; d < m.rank; ++d) {
    coord[d] = int64_t(int32_t(t.r[size_t(o[1].regs[d])]));
    volume *= m.box[d];
  }
  TmaCopy c;
  c.phase = mbarrierAt(mbar, in).phase;
  c.mbar = mbar;
  c.dst = dst;
  c.swizzle = swizzle;
  c.issuer = index(t);
  c.issue = &in;
  c.data.assign(volume * elt, 0);
  bool nanFill = m.oobFill == 1 && (m.type >= 6 && m.type <= 12);
  for (size_t i = 0; i < volume; ++i) {
    size_t rest = i;
    bool inside = true;
    uint64_t at = uint64_t(uintptr_t(m.address));
    for (unsigned d = 0; d < m.rank; ++d) {
      int64_t g = coord[d] + int64_t(rest % m.box[d]);
      rest /= m.box[d];
      if (g < 0 || uint64_t(g) >= m.dims[d]) {
        inside = false;
        break;
      }
      at += uint64_t(g) * (d == 0 ? elt : m.strides[d - 1]);
    }
    uint8_t *out = c.data.data() + i * elt;
    if (inside)
      std::memcpy(out, memAt(t, 'g', at, elt, in), elt);
    else if (nanFill)
      std::memset(out, 0xff, elt);
  }
  for (size_t l = 0; l < c.data.size(); l += 16) {
    uint64_t chunk = swizzled(dst + l, swizzle);
    sharedAt(chunk + kSharedWindow, 16, in);
    checkNotReadByWgmma(chunk, 16, in);
    checkFenced(chunk, 16, in, "a TMA writes");
    for (uint64_t b = chunk; b < chunk + 16; ++b) {
      if (inFlight[b] >= 0)
        error(in, "a TMA copy into shared bytes another copy has not landed in yet");
      inFlight[b] = c.issuer;
    }
  }
  tmaInFlight.push_back(std::move(c));
}

void Launch::landTma(uint64_t mbar) {
  for (size_t i = 0; i < tmaInFlight.size();) {
    TmaCopy &c = tmaInFlight[i];
    if (c.mbar != mbar) {
      ++i;
      continue;
    }
    for (size_t l = 0; l < c.data.size(); l += 16) {
      uint64_t chunk = swizzled(c.dst + l, c.swizzle);
      std::memcpy(shared.data() + chunk, c.data.data() + l, 16);
      for (uint64_t b = chunk; b < chunk + 16; ++b) {
        inFlight[b] = -1;
        genericWriter[b] = -1; // (the async proxy's bytes now)
      }
    }
    Mbarrier &m = mbarrierAt(mbar, *c.issue);
    if (m.phase != c.phase)
      error(*c.issue, "a TMA copy completing in a later phase of its mbarrier than the one it "
                      "was issued in");
    const Inst *issue = c.issue;
    m.tx -= int64_t(c.data.size());
    tmaInFlight.erase(tmaInFlight.begin() + long(i));
    completeIfDone(m, mbar, *issue);
  }
}

bool Launch::tryWait(Thread &t, const Inst &in) {
  current = &in;
  // mbarrier.try_wait.parity.shared.b64 p, [addr], parity{, hint}
  const std::vector<Operand> &o = in.ops;
  uint64_t off = address(t, o.at(1), in) - kSharedWindow;
  landTma(off); // the copies this barrier waits for land now (any time until here)
  Mbarrier &m = mbarrierAt(off, in);
  uint64_t parity = value(t, o.at(2), in) & 1;
  if ((m.phase & 1) == parity) {
    // Not complete: try_wait returns false the first time (it may time out
    // on a GPU: code must retry), and blocks when the thread retries.
    if (t.failedWait != t.pc) {
      t.failedWait = t.pc;
      set(t, o[0], 0);
      return true;
    }
    return false;
  }
  t.failedWait = -1;
  set(t, o[0], 1);
  return true;
}

void Launch::wgmma(std::vector<Thread *> &group, const Inst &in) {
  // SS: d, descA, descB, scale-d, scale-a, scale-b, trans-a, trans-b
  // RS: d, {a0..a3}, descB, scale-d, scale-a, scale-b, trans-b
  const std::vector<Operand> &o = in.ops;
  int N = in.count;
  bool rs = o.size() > 1 && o[1].kind == Kind::Vec;
  if (o.size() != (rs ? 7u : 8u) || o[0].kind != Kind::Vec || int(o[0].regs.size()) != N / 2)
    error(in, "unexpected wgmma operands");
  Thread &t0 = *group[0];
  auto imm = [&](size_t i) { return int64_t(value(t0, o[i], in)); };
  for (Thread *t : group) // uniform operands
    for (size_t i = rs ? 2 : 1; i < o.size(); ++i)
      if (value(*t, o[i], in) != value(t0, o[i], in))
        error(in, "wgmma operands differ between the warpgroup's threads");
  bool accumulate = imm(3) != 0;
  float scaleA = imm(4) < 0 ? -1.f : 1.f, scaleB = imm(5) < 0 ? -1.f : 1.f;
  bool transA = !rs && imm(6) != 0, transB = imm(rs ? 6 : 7) != 0;
  auto element = [&](uint64_t desc, bool trans, int mn, int k) -> float {
    // The start address is the shared address's bits 4..17 (a window of
    // 256 KB: offsets wrap there).
    uint64_t start = ((((desc & 0x3fff) << 4) - kSharedWindow) & 0x3ffff) + kSharedWindow,
             lbo = ((desc >> 16) & 0x3fff) << 4, sbo = ((desc >> 32) & 0x3fff) << 4;
    if ((desc >> 49) & 7)
      error(in, "a wgmma descriptor with a base offset");
    int mode = int(desc >> 62);
    int width = mode == 0 ? 0 : mode == 1 ? 128 : mode == 2 ? 64 : 32;
    // With a base offset of 0 the swizzle pattern must start at a pattern
    // boundary (the k steps inside a 128-byte row keep bits 7.. unchanged).
    if (width && (((start - kSharedWindow) >> 7) & uint64_t(width / 16 - 1)))
      error(in, "a swizzled wgmma operand starting inside its swizzle pattern with a base "
                "offset of 0");
    uint64_t a;
    if (!width) {
      if (trans)
        error(in, "an MN-major wgmma operand without swizzling is not supported by the emulator");
      a = start + uint64_t(mn / 8) * sbo + uint64_t(mn % 8) * 16 + uint64_t(k / 8) * lbo +
          uint64_t(k % 8) * 2;
    } else {
      int row = width / 2; // elements of a swizzle row
      a = trans ? start + uint64_t(mn / row) * lbo + uint64_t(k / 8) * sbo +
                      uint64_t(k % 8) * uint64_t(width) + uint64_t(mn % row) * 2
                : start + uint64_t(mn / 8) * sbo + uint64_t(mn % 8) * uint64_t(width) +
                      uint64_t(k / row) * lbo + uint64_t(k % row) * 2;
    }
    uint64_t off = swizzled(a - kSharedWindow, width);
    uint8_t *p = sharedAt(off + kSharedWindow, 2, in);
    // Read at issue here; on a GPU any time until the wait: the bytes stay
    // protected until then.
    group[0]->wgUncommittedBytes.push_back(uint32_t(off));
    wgmmaReaders[off]++;
    wgmmaReaders[off + 1]++;
    if (inFlight[off] >= 0 || inFlight[off + 1] >= 0)
      error(in, "wgmma reads shared memory whose copy has not landed (no wait before it)");
    checkFenced(off, 2, in, "wgmma reads");
    uint16_t h;
    std::memcpy(&h, p, 2);
    return in.t2.bf ? bf16ToF32(h) : f16ToF32(h);
  };
  std::vector<float> A(64 * 16), B(size_t(N) * 16);
  for (int m = 0; m < 64; ++m)
    for (int k = 0; k < 16; ++k)
      if (!rs)
        A[size_t(m * 16 + k)] = element(value(t0, o[1], in), transA, m, k);
  if (rs) { // A's rows 16 w.. in warp w's registers, as mma.m16n8k16's A
    for (size_t i = 0; i < group.size(); ++i) {
      Thread &t = *group[i];
      int w = int(i / 32), l = int(i % 32), g = l / 4, tg = l % 4;
      for (int e = 0; e < 8; ++e) {
        int row = 16 * w + g + ((e >> 1) & 1) * 8, col = tg * 2 + (e & 1) + (e >= 4 ? 8 : 0);
        size_t ra = size_t(o[1].regs[size_t(e / 2)]);
        if (t.lockedRegs && t.pendingWrites[ra])
          error(in, "a wgmma reads A from a register a pending wgmma writes");
        uint16_t h = uint16_t(t.r[ra] >> (16 * (e & 1)));
        A[size_t(row * 16 + col)] = in.t2.bf ? bf16ToF32(h) : f16ToF32(h);
      }
    }
  }
  uint64_t descB = value(t0, o[2], in);
  for (int nn = 0; nn < N; ++nn)
    for (int k = 0; k < 16; ++k)
      B[size_t(nn * 16 + k)] = element(descB, transB, nn, k);
  for (size_t i = 0; i < group.size(); ++i) {
    Thread &t = *group[i];
    int w = int(i / 32), l = int(i % 32), g = l / 4, tg = l % 4;
    for (int j = 0; j < N / 8; ++j)
      for (int e = 0; e < 4; ++e) {
        int row = 16 * w + g + (e >= 2 ? 8 : 0), col = 8 * j + 2 * tg + (e & 1);
        double sum = 0;
        for (int k = 0; k < 16; ++k)
          sum += double(scaleA * A[size_t(row * 16 + k)]) * double(scaleB * B[size_t(col * 16 + k)]);
        // Asynchronous: the result is the register's once a wgmma.wait_group
        // covers this wgmma's group (a chained wgmma reads the pending one).
        size_t r = size_t(o[0].regs[size_t(j * 4 + e)]);
        if (t.shadow.empty()) {
          t.shadow.assign(t.r.size(), 0);
          t.pendingWrites.assign(t.r.size(), 0);
        }
        double c = accumulate ? double(asF32(t.pendingWrites[r] ? t.shadow[r] : t.r[r])) : 0.0;
        t.shadow[r] = fromF32(float(sum + c));
        if (t.pendingWrites[r]++ == 0)
          ++t.lockedRegs;
        t.wgUncommitted.push_back(int(r));
      }
  }
}

void Launch::collective(std::vector<Thread *> &lanes, const Inst &in) {
  auto reg = [&](Thread *t, int r) -> uint64_t & { return t->r[size_t(r)]; };
  switch (in.op) {
  case Op::Mma: {
    // D (16x8 f32) = A (16x16, row) B (16x8, col) + C; PTX ISA fragment layouts.
    const Operand &d = in.ops[0], &a = in.ops[1], &b = in.ops[2], &c = in.ops[3];
    if (d.regs.size() != 4 || a.regs.size() != 4 || b.regs.size() != 2 || c.regs.size() != 4)
      error(in, "mma m16n8k16 expects 4, 4, 2 and 4 registers");
    float A[16][16], B[16][8], C[16][8];
    auto elt = [&](uint64_t word, int half) {
      uint16_t h = uint16_t(word >> (16 * half));
      return in.t2.bf ? bf16ToF32(h) : f16ToF32(h);
    };
    for (unsigned l = 0; l < 32; ++l) {
      Thread *t = lanes[l];
      unsigned g = l >> 2, tig = l & 3;
      for (int i = 0; i < 8; ++i) { // a0..a7
        unsigned row = g + ((i >> 1) & 1) * 8, col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
        A[row][col] = elt(reg(t, a.regs[size_t(i / 2)]), i & 1);
      }
      for (int i = 0; i < 4; ++i) { // b0..b3
        unsigned k = tig * 2 + (i & 1) + (i >= 2 ? 8 : 0);
        B[k][g] = elt(reg(t, b.regs[size_t(i / 2)]), i & 1);
      }
      for (int i = 0; i < 4; ++i) { // c0..c3
        unsigned row = g + (i >= 2 ? 8 : 0), col = tig * 2 + (i & 1);
        C[row][col] = asF32(reg(t, c.regs[size_t(i)]));
      }
    }
    float D[16][8];
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j) {
        double s = 0;
        for (int k = 0; k < 16; ++k)
          s += double(A[i][k]) * double(B[k][j]);
        D[i][j] = float(s + double(C[i][j]));
      }
    for (unsigned l = 0; l < 32; ++l) {
      unsigned g = l >> 2, tig = l & 3;
      for (int i = 0; i < 4; ++i)
        reg(lanes[l], d.regs[size_t(i)]) = fromF32(D[g + (i >= 2 ? 8 : 0)][tig * 2 + (i & 1)]);
    }
    break;
  }
  case Op::Ldmatrix: {
    int n = in.count;
    const Operand &d = in.ops[0], &m = in.ops[1];
    if (int(d.regs.size()) != n)
      error(in, "ldmatrix destination count differs from .x" + std::to_string(n));
    uint16_t M[4][8][8];
    for (int j = 0; j < n; ++j)
      for (int r = 0; r < 8; ++r) {
        uint64_t addr = address(*lanes[size_t(8 * j + r)], m, in);
        if (addr % 16)
          error(in, "ldmatrix row address not 16-byte aligned");
        std::memcpy(M[j][r], sharedAt(addr, 16, in), 16);
        track(*lanes[size_t(8 * j + r)], addr - kSharedWindow, 16, /*write=*/false, in);
      }
    for (unsigned l = 0; l < 32; ++l)
      for (int j = 0; j < n; ++j) {
        unsigned row = l / 4, col = 2 * (l % 4);
        uint16_t lo = in.trans ? M[j][col][row] : M[j][row][col];
        uint16_t hi = in.trans ? M[j][col + 1][row] : M[j][row][col + 1];
        reg(lanes[l], d.regs[size_t(j)]) = uint64_t(lo) | (uint64_t(hi) << 16);
      }
    break;
  }
  case Op::Shfl: {
    // shfl.sync.mode.b32 d[|p], a, b, c, membermask
    const Operand &d = in.ops[0];
    uint64_t src[32];
    for (unsigned l = 0; l < 32; ++l)
      src[l] = value(*lanes[l], in.ops[1], in);
    for (unsigned l = 0; l < 32; ++l) {
      Thread &t = *lanes[l];
      if (uint32_t(value(t, in.ops[4], in)) != 0xffffffffu)
        error(in, "shfl.sync with a partial member mask is not supported by the emulator");
      unsigned bval = unsigned(value(t, in.ops[2], in)) & 31, cv = unsigned(value(t, in.ops[3], in));
      unsigned cval = cv & 31, seg = (cv >> 8) & 31;
      unsigned maxLane = (l & seg) | (cval & ~seg), minLane = l & seg;
      int j;
      bool p;
      if (in.cmp == "up") {
        j = int(l) - int(bval);
        p = j >= int(maxLane);
      } else if (in.cmp == "down") {
        j = int(l + bval);
        p = j <= int(maxLane);
      } else if (in.cmp == "bfly") {
        j = int(l ^ bval);
        p = j <= int(maxLane);
      } else if (in.cmp == "idx") {
        j = int(minLane | (bval & ~seg));
        p = j <= int(maxLane);
      } else
        error(in, "unknown shfl mode " + in.cmp);
      if (!p)
        j = int(l);
      t.r[size_t(d.reg)] = zext(src[j], 32);
      if (d.reg2 >= 0)
        t.r[size_t(d.reg2)] = p;
    }
    break;
  }
  case Op::Vote: {
    bool vals[32];
    for (unsigned l = 0; l < 32; ++l)
      vals[l] = value(*lanes[l], in.ops[1], in) != 0;
    uint32_t ballot = 0;
    for (unsigned l = 0; l < 32; ++l)
      ballot |= uint32_t(vals[l]) << l;
    for (unsigned l = 0; l < 32; ++l) {
      uint64_t r = in.cmp == "ballot" ? ballot
                   : in.cmp == "all"  ? ballot == 0xffffffffu
                   : in.cmp == "any"  ? ballot != 0
                   : in.cmp == "uni"  ? (ballot == 0 || ballot == 0xffffffffu)
                                      : 0;
      lanes[l]->r[size_t(in.ops[0].reg)] = r;
    }
    break;
  }
  case Op::Activemask:
    for (Thread *t : lanes)
      t->r[size_t(in.ops[0].reg)] = 0xffffffffu;
    break;
  case Op::WarpSync:
    break;
  default:
    error(in, "internal: not a warp collective");
  }
}

void Launch::runBlock() {
  size_t n = threads.size();
  for (size_t i = 0; i < n; ++i) {
    Thread &t = threads[i];
    t = Thread();
    t.tid[0] = unsigned(i % block[0]);
    t.tid[1] = unsigned(i / block[0] % block[1]);
    t.tid[2] = unsigned(i / (block[0] * block[1]));
    t.lane = unsigned(i % 32);
    t.warp = unsigned(i / 32);
    // Not zero: a register or local slot read before it is written shows.
    t.r.assign(size_t(f.regs), 0xffffffff7fc00000ull);
    t.local.assign(f.localBytes, 0xcd);
  }
  // All-ones bytes, NaN in every float type (a GPU's shared memory holds
  // what ran before): a kernel that reads bytes it never wrote shows it in
  // its result (0xcd bytes, finite, vanished in a product with P = 0).
  std::fill(shared.begin(), shared.end(), uint8_t(0xff));
  lastWrite.assign(shared.size(), Access());
  lastRead.assign(shared.size(), Access());
  inFlight.assign(shared.size(), -1);
  wgmmaReaders.assign(shared.size() + 1, 0);
  genericWriter.assign(shared.size() + 1, -1);
  genericWriterFences.assign(shared.size() + 1, 0);
  proxyFences.assign(threads.size(), 0);
  epoch = 1;
  warpEpochs.assign((n + 31) / 32, 0);
  mbarriers.clear();
  tmaInFlight.clear();
  for (NamedBarrier &b : named)
    b = NamedBarrier();
  const std::vector<Inst> &code = f.code;
  unsigned long long progress = 0;
  // Runs t until it stops at a collective, a barrier, a wait that does not
  // pass, or its end.
  auto runThread = [&](Thread &t) {
    if (t.state == Thread::Blocked)
      t.state = Thread::Running; // retry its wait
    while (t.state == Thread::Running) {
      if (t.pc < 0 || size_t(t.pc) >= code.size()) {
        t.state = Thread::Done;
        ++progress;
        break;
      }
      const Inst &in = code[size_t(t.pc)];
      ++executed;
      if (++steps > kStepLimit)
        error(in, "more than " + std::to_string(kStepLimit) +
                      " instructions in one launch: a kernel that does not end?");
      if (in.pred >= 0 && (t.r[size_t(in.pred)] != 0) == in.predNeg) {
        ++t.pc;
        ++progress;
        continue;
      }
      if (in.op == Op::Bra) {
        t.pc = f.labels[size_t(in.ops.at(0).label)];
        ++progress;
        continue;
      }
      switch (in.coll) {
      case Coll::No:
        exec(t, in);
        ++t.pc;
        ++progress;
        continue;
      case Coll::Exit:
        t.state = Thread::Done;
        ++progress;
        break;
      case Coll::Warp:
        t.state = Thread::AtWarp;
        break;
      case Coll::Group:
        t.state = Thread::AtGroup;
        break;
      case Coll::Barrier: {
        // bar.sync id{, count}: count threads (all the block's by default).
        unsigned id = in.ops.empty() ? 0 : unsigned(value(t, in.ops[0], in));
        unsigned count = in.ops.size() > 1 ? unsigned(value(t, in.ops[1], in)) : unsigned(n);
        arrive(id, count, in, in.ops.size() < 2);
        t.barrier = int(id);
        t.state = Thread::AtBarrier;
        ++progress;
        break;
      }
      case Coll::Wait:
        if (tryWait(t, in)) {
          ++t.pc;
          ++progress;
          continue;
        }
        t.state = Thread::Blocked;
        break;
      }
    }
  };
  size_t warps = (n + 31) / 32;
  while (true) {
    unsigned long long before = progress;
    for (size_t step = 0; step < warps; ++step) {
      // PTXEMU_REVERSE_WARPS=1: the warps in the other order (another
      // interleaving: a race that one order hides may show in the other).
      size_t w = reverseWarps ? warps - 1 - step : step;
      size_t first = w * 32, last = std::min(n, first + 32);
      while (true) {
        for (size_t i = first; i < last; ++i)
          runThread(threads[i]);
        size_t atWarp = 0, done = 0;
        for (size_t i = first; i < last; ++i) {
          atWarp += threads[i].state == Thread::AtWarp;
          done += threads[i].state == Thread::Done;
        }
        if (!atWarp)
          break;
        size_t firstAt = first;
        while (threads[firstAt].state != Thread::AtWarp)
          ++firstAt;
        const Inst &in = code[size_t(threads[firstAt].pc)];
        if (atWarp != 32) {
          // The other lanes may still be blocked (an mbarrier) or at a
          // barrier: wait for them, unless they exited.
          bool waiting = false;
          for (size_t i = first; i < last; ++i)
            waiting = waiting || threads[i].state == Thread::Blocked ||
                      threads[i].state == Thread::AtBarrier ||
                      threads[i].state == Thread::AtGroup;
          if (waiting)
            break;
          error(in, "a warp-collective instruction reached by " + std::to_string(atWarp) +
                        " of the warp's lanes (" + std::to_string(done) +
                        " exited; .sync.aligned needs all 32)");
        }
        std::vector<Thread *> lanes;
        for (size_t i = first; i < last; ++i) {
          if (threads[i].pc != threads[firstAt].pc)
            error(in, "the lanes of warp " + std::to_string(w) +
                          " reached different collective instructions (lines " +
                          std::to_string(in.line) + " and " +
                          std::to_string(code[size_t(threads[i].pc)].line) + ")");
          lanes.push_back(&threads[i]);
        }
        ++executed;
        ++warpEpochs[w]; // the collective orders the lanes' accesses before and after it
        collective(lanes, in);
        ++warpEpochs[w];
        ++progress;
        for (Thread *t : lanes) {
          t->state = Thread::Running;
          ++t->pc;
        }
      }
    }
    // Warpgroup collectives (wgmma): the 4 warps' 128 threads at one.
    for (size_t g = 0; g * 128 < n; ++g) {
      size_t first = g * 128, last = std::min(n, first + 128);
      size_t at = 0;
      for (size_t i = first; i < last; ++i)
        at += threads[i].state == Thread::AtGroup;
      if (!at)
        continue;
      if (at != 128) {
        bool done = false;
        for (size_t i = first; i < last; ++i)
          done = done || threads[i].state == Thread::Done;
        if (done || last - first != 128)
          error(code[size_t(threads[first].pc)],
                "a warpgroup instruction reached by " + std::to_string(at) +
                    " of the warpgroup's 128 threads");
        continue;
      }
      const Inst &in = code[size_t(threads[first].pc)];
      std::vector<Thread *> group;
      for (size_t i = first; i < last; ++i) {
        if (threads[i].pc != threads[first].pc)
          error(in, "the threads of warpgroup " + std::to_string(g) +
                        " reached different wgmma instructions");
        group.push_back(&threads[i]);
      }
      ++executed;
      for (size_t w = first / 32; w < last / 32; ++w)
        ++warpEpochs[w];
      wgmma(group, in);
      for (size_t w = first / 32; w < last / 32; ++w)
        ++warpEpochs[w];
      ++progress;
      for (Thread *t : group) {
        t->state = Thread::Running;
        ++t->pc;
      }
    }
    // Barriers whose count has arrived release their waiters (for a count
    // of the whole block, exited threads count as arrived, as on the GPU).
    size_t exited = 0;
    for (const Thread &t : threads)
      exited += t.state == Thread::Done;
    for (unsigned id = 0; id < kNamedBarriers; ++id) {
      NamedBarrier &b = named[id];
      if (!b.expected || b.arrived + (b.wholeBlock ? exited : 0) < b.expected)
        continue;
      if (b.arrived > b.expected)
        error(code[0], "barrier " + std::to_string(id) + " saw " + std::to_string(b.arrived) +
                           " arrivals for a count of " + std::to_string(b.expected));
      int pc = -1;
      for (Thread &t : threads)
        if (t.state == Thread::AtBarrier && t.barrier == int(id)) {
          if (pc >= 0 && t.pc != pc)
            error(code[size_t(t.pc)], "threads wait at different bar.sync instructions (lines " +
                                          std::to_string(code[size_t(pc)].line) + " and " +
                                          std::to_string(code[size_t(t.pc)].line) + ")");
          pc = t.pc;
          t.state = Thread::Running;
          ++t.pc;
        }
      b = NamedBarrier();
      ++epoch; // (one interval for all barriers: conservative for named ones)
      ++progress;
    }
    size_t done = 0;
    for (const Thread &t : threads)
      done += t.state == Thread::Done;
    if (done == n) {
      for (const Thread &t : threads) {
        const Thread::Copy *unwaited = t.pending.empty() ? nullptr : &t.pending.front();
        for (const auto &g : t.groups)
          if (!unwaited && !g.empty())
            unwaited = &g.front();
        if (unwaited) // (empty groups left at the end are harmless)
          error(*unwaited->issue, "thread " + std::to_string(index(t)) +
                                      " exited with cp.async copies never waited for");
      }
      if (!tmaInFlight.empty())
        error(*tmaInFlight.front().issue, "the block ended with a TMA copy nobody waited for");
      for (const Thread &t : threads)
        if (t.lockedRegs)
          error(code[0], "thread " + std::to_string(index(t)) +
                             " ended with wgmma results never waited for (no wgmma.wait_group)");
      for (const auto &[off, m] : mbarriers)
        if (m.tx != 0)
          error(code[0], "the block ended with an mbarrier expecting " + std::to_string(m.tx) +
                             " TMA bytes that never came (shared offset " +
                             std::to_string(off) + ")");
      break;
    }
    if (progress == before) {
      std::string states;
      for (size_t w = 0; w < warps; ++w) {
        const Thread &t = threads[w * 32];
        static const char *names[] = {"running", "at a warp collective", "at a warpgroup collective",
                                      "at a barrier", "waiting on an mbarrier", "done"};
        states += " warp " + std::to_string(w) + " " + names[int(t.state)] +
                  (t.state == Thread::Done ? std::string()
                                           : " (line " + std::to_string(code[size_t(t.pc)].line) + ")") +
                  ";";
      }
      error(code[size_t(threads[0].state == Thread::Done ? 0 : threads[0].pc)],
            "deadlock: no thread can go on:" + states);
    }
  }
}
} // namespace

extern "C" {

void *ptxemu_load(const char *ptx, char *err, size_t errLen) {
  auto module = std::make_unique<Module>();
  try {
    Parser(*module).parse(ptx);
  } catch (const std::exception &e) {
    std::snprintf(err, errLen, "%s", e.what());
    return nullptr;
  }
  return module.release();
}

void ptxemu_unload(void *module) { delete static_cast<Module *>(module); }

void *ptxemu_function(void *module, const char *name) {
  for (auto &f : static_cast<Module *>(module)->functions)
    if (f->name == name)
      return f.get();
  return nullptr;
}

int ptxemu_launch(void *function, const unsigned grid[3], const unsigned block[3],
                  unsigned sharedBytes, void **params, char *err, size_t errLen) {
  const Function &f = *static_cast<const Function *>(function);
  try {
    if (size_t(block[0]) * block[1] * block[2] > 1024 || !block[0] || !block[1] || !block[2])
      throw Error("a block of " + std::to_string(size_t(block[0]) * block[1] * block[2]) +
                  " threads (1 to 1024)");
    Launch l(f);
    for (int i = 0; i < 3; ++i) {
      l.grid[i] = grid[i];
      l.block[i] = block[i];
    }
    l.params.assign(f.paramBytes, 0);
    for (size_t i = 0; i < f.params.size(); ++i)
      std::memcpy(l.params.data() + f.params[i].offset, params[i], f.params[i].size);
    l.dynamicBase = (f.staticShared + f.dynamicAlign - 1) / f.dynamicAlign * f.dynamicAlign;
    l.shared.assign(l.dynamicBase + sharedBytes, 0);
    l.threads.resize(size_t(block[0]) * block[1] * block[2]);
    for (unsigned z = 0; z < grid[2]; ++z)
      for (unsigned y = 0; y < grid[1]; ++y)
        for (unsigned x = 0; x < grid[0]; ++x) {
          l.ctaid[0] = x, l.ctaid[1] = y, l.ctaid[2] = z;
          l.runBlock();
        }
  } catch (const std::exception &e) {
    std::snprintf(err, errLen, "%s", e.what());
    return 1;
  }
  return 0;
}

unsigned long long ptxemu_instructions(void) { return executed; }

void ptxemu_set_tensor_maps(PtxemuTensorMapResolver resolver) { tensorMapResolver = resolver; }

void ptxemu_allocation(const void *p, size_t bytes, int live) {
  if (live)
    globalAllocations[uintptr_t(p)] = bytes;
  else
    globalAllocations.erase(uintptr_t(p));
}

} // extern "C"
