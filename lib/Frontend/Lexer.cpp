// The lexer of the .attn spec language.
#include "Lexer.h"

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

Token Lexer::number(const char *start) {
  bool isFloat = false;
  while (pos < text.end() && std::isdigit(static_cast<unsigned char>(*pos)))
    ++pos;
  if (pos < text.end() && *pos == '.') {
    isFloat = true;
    ++pos;
    while (pos < text.end() && std::isdigit(static_cast<unsigned char>(*pos)))
      ++pos;
  }
  if (pos < text.end() && (*pos == 'e' || *pos == 'E')) {
    const char *exp = pos + 1;
    if (exp < text.end() && (*exp == '+' || *exp == '-'))
      ++exp;
    if (exp < text.end() && std::isdigit(static_cast<unsigned char>(*exp))) {
      isFloat = true;
      pos = exp;
      while (pos < text.end() && std::isdigit(static_cast<unsigned char>(*pos)))
        ++pos;
    } else {
      ++pos;
      Token t = make(Tok::Error, start);
      t.error = "malformed number '" + t.text.str() + "': expected digits after the exponent";
      return t;
    }
  }
  if (pos < text.end() && (std::isalpha(static_cast<unsigned char>(*pos)) || *pos == '_')) {
    while (pos < text.end() && (std::isalnum(static_cast<unsigned char>(*pos)) || *pos == '_'))
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
    if (errno == ERANGE && std::isinf(t.floatValue)) {
      t.kind = Tok::Error;
      t.error = "number '" + s + "' is out of range";
    }
  } else {
    t.intValue = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == ERANGE) {
      t.kind = Tok::Error;
      t.error = "integer literal '" + s + "' is out of range";
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
  if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
    while (pos < text.end() && (std::isalnum(static_cast<unsigned char>(*pos)) || *pos == '_'))
      ++pos;
    return make(Tok::Ident, start);
  }
  if (std::isdigit(static_cast<unsigned char>(c)) ||
      (c == '.' && pos < text.end() && std::isdigit(static_cast<unsigned char>(*pos)))) {
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
    t.error = "unexpected byte in the input";
  return t;
}

} // namespace heed::spec
