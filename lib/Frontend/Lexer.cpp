// The lexer of the .attn spec language: text to tokens, with located lexical errors.
#include "Lexer.h"

#include "heed/Frontend/Evaluate.h"

#include "llvm/Support/FormatVariadic.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace heed::spec {

const char *describe(Tok kind) {
  switch (kind) {
  case Tok::End: return "end of file";
  case Tok::Error: return "invalid token";
  case Tok::Ident: return "a name";
  case Tok::Int: return "an integer";
  case Tok::Float: return "a number";
  case Tok::LParen: return "'('";
  case Tok::RParen: return "')'";
  case Tok::LBrace: return "'{'";
  case Tok::RBrace: return "'}'";
  case Tok::LBracket: return "'['";
  case Tok::RBracket: return "']'";
  case Tok::Comma: return "','";
  case Tok::Colon: return "':'";
  case Tok::Semi: return "';'";
  case Tok::Question: return "'?'";
  case Tok::Assign: return "'='";
  case Tok::Plus: return "'+'";
  case Tok::Minus: return "'-'";
  case Tok::Star: return "'*'";
  case Tok::Slash: return "'/'";
  case Tok::Percent: return "'%'";
  case Tok::Bang: return "'!'";
  case Tok::Lt: return "'<'";
  case Tok::Le: return "'<='";
  case Tok::Gt: return "'>'";
  case Tok::Ge: return "'>='";
  case Tok::EqEq: return "'=='";
  case Tok::Ne: return "'!='";
  case Tok::AndAnd: return "'&&'";
  case Tok::OrOr: return "'||'";
  }
  return "?";
}

namespace {
bool isDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)); }
bool isIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool isIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
} // namespace

Token Lexer::number(const char *start) {
  bool isFloat = false;
  while (pos < text.end() && isDigit(*pos))
    ++pos;
  if (pos < text.end() && *pos == '.') {
    isFloat = true;
    ++pos;
    while (pos < text.end() && isDigit(*pos))
      ++pos;
  }
  if (pos < text.end() && (*pos == 'e' || *pos == 'E')) {
    const char *exp = pos + 1;
    if (exp < text.end() && (*exp == '+' || *exp == '-'))
      ++exp;
    if (exp < text.end() && isDigit(*exp)) {
      isFloat = true;
      pos = exp;
      while (pos < text.end() && isDigit(*pos))
        ++pos;
    } else {
      pos = exp;
      Token t = make(Tok::Error, start);
      t.error = "malformed number '" + t.text.str() + "': expected digits after the exponent";
      return t;
    }
  }
  // `12abc`, `1.5.2`, `0x10`: one bad token is clearer than two good ones.
  if (pos < text.end() && (isIdentChar(*pos) || *pos == '.')) {
    while (pos < text.end() && (isIdentChar(*pos) || *pos == '.'))
      ++pos;
    Token t = make(Tok::Error, start);
    t.error = "malformed number '" + t.text.str() + "'";
    return t;
  }
  Token t = make(isFloat ? Tok::Float : Tok::Int, start);
  std::string s = t.text.str();
  errno = 0;
  if (isFloat) {
    t.floatValue = std::strtod(s.c_str(), nullptr);
    // Literals are f32: one that rounds to infinity there is an error (one
    // too small for f32 rounds to 0 or a subnormal, as in C).
    if ((errno == ERANGE && std::isinf(t.floatValue)) || overflowsF32(t.floatValue)) {
      t.kind = Tok::Error;
      t.error = "floating-point literal out of range (the largest f32 is 3.40282347e38)";
    }
  } else {
    t.intValue = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == ERANGE) {
      t.kind = Tok::Error;
      t.error = "integer literal out of range (the largest i64 is 9223372036854775807)";
    }
  }
  return t;
}

Token Lexer::next() {
  // Skip blanks and comments.
  while (pos < text.end()) {
    if (std::isspace(static_cast<unsigned char>(*pos))) {
      ++pos;
    } else if (*pos == '#') {
      while (pos < text.end() && *pos != '\n')
        ++pos;
    } else {
      break;
    }
  }
  const char *start = pos;
  if (pos >= text.end())
    return make(Tok::End, start);
  char c = *pos++;
  if (isIdentStart(c)) {
    while (pos < text.end() && isIdentChar(*pos))
      ++pos;
    return make(Tok::Ident, start);
  }
  if (isDigit(c) || (c == '.' && pos < text.end() && isDigit(*pos))) {
    pos = start;
    return number(start);
  }
  auto two = [&](char second, Tok yes, Tok no) {
    if (pos < text.end() && *pos == second) {
      ++pos;
      return make(yes, start);
    }
    return make(no, start);
  };
  switch (c) {
  case '(': return make(Tok::LParen, start);
  case ')': return make(Tok::RParen, start);
  case '{': return make(Tok::LBrace, start);
  case '}': return make(Tok::RBrace, start);
  case '[': return make(Tok::LBracket, start);
  case ']': return make(Tok::RBracket, start);
  case ',': return make(Tok::Comma, start);
  case ':': return make(Tok::Colon, start);
  case ';': return make(Tok::Semi, start);
  case '?': return make(Tok::Question, start);
  case '+': return make(Tok::Plus, start);
  case '-': return make(Tok::Minus, start);
  case '*': return make(Tok::Star, start);
  case '/': return make(Tok::Slash, start);
  case '%': return make(Tok::Percent, start);
  case '=': return two('=', Tok::EqEq, Tok::Assign);
  case '!': return two('=', Tok::Ne, Tok::Bang);
  case '<': return two('=', Tok::Le, Tok::Lt);
  case '>': return two('=', Tok::Ge, Tok::Gt);
  case '&':
    if (pos < text.end() && *pos == '&') {
      ++pos;
      return make(Tok::AndAnd, start);
    }
    break;
  case '|':
    if (pos < text.end() && *pos == '|') {
      ++pos;
      return make(Tok::OrOr, start);
    }
    break;
  default:
    break;
  }
  Token t = make(Tok::Error, start);
  if (c == '&' || c == '|')
    t.error = std::string("unexpected character '") + c + "'; did you mean '" + c + c + "'?";
  else if (std::isprint(static_cast<unsigned char>(c)))
    t.error = std::string("unexpected character '") + c + "'";
  else
    t.error = llvm::formatv("unexpected byte 0x{0:x-2} (only ASCII is allowed outside comments)",
                            static_cast<unsigned>(static_cast<unsigned char>(c)))
                  .str();
  return t;
}

} // namespace heed::spec
