// Tokens of the .attn spec language and the lexer that produces them.
#ifndef HEED_LIB_FRONTEND_LEXER_H
#define HEED_LIB_FRONTEND_LEXER_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/SMLoc.h"

#include <cstdint>
#include <string>

namespace heed::spec {

enum class Tok {
  End, Error, Ident, Int, Float,
  LParen, RParen, LBrace, RBrace, LBracket, RBracket,
  Comma, Colon, Semi, Question, Assign,
  Plus, Minus, Star, Slash, Percent, Bang,
  Lt, Le, Gt, Ge, EqEq, Ne, AndAnd, OrOr,
};

struct Token {
  Tok kind = Tok::End;
  llvm::StringRef text;
  int64_t intValue = 0;
  double floatValue = 0;
  std::string error; ///< for Tok::Error
  llvm::SMLoc loc() const { return llvm::SMLoc::getFromPointer(text.data()); }
  /// Just past the token: ranges in diagnostics end here.
  llvm::SMLoc endLoc() const { return llvm::SMLoc::getFromPointer(text.end()); }
};

/// Splits spec text into tokens; `#` starts a comment to the end of the line.
/// Lexical errors come back as Tok::Error tokens (with a message) rather than
/// stopping the lexer, so the parser reports them where it meets them. The
/// lexer is cheap to copy, which the parser uses to look one token ahead.
class Lexer {
public:
  explicit Lexer(llvm::StringRef text) : text(text), pos(text.begin()) {}
  Token next();

private:
  Token make(Tok kind, const char *start) {
    Token t;
    t.kind = kind;
    t.text = llvm::StringRef(start, pos - start);
    return t;
  }
  Token number(const char *start);

  llvm::StringRef text;
  const char *pos;
};

/// How a token kind is named in messages: "')'", "a name", ...
const char *describe(Tok kind);

} // namespace heed::spec

#endif
