// SHA-256 (FIPS 180-4): cache keys and artifact checksums. No dependencies.
#ifndef HEED_RUNTIME_SHA256_H
#define HEED_RUNTIME_SHA256_H

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace heed {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
public:
  Sha256();
  Sha256 &update(const void *data, size_t size);
  Sha256 &update(const std::string &text) { return update(text.data(), text.size()); }
  Digest finish();

private:
  void block(const uint8_t *p);
  uint32_t state[8];
  uint8_t pending[64];
  size_t pendingSize = 0;
  uint64_t totalBytes = 0;
};

Digest sha256(const void *data, size_t size);
/// Lower-case hex, 64 characters.
std::string toHex(const Digest &digest);
/// Parses 64 hex characters; false on anything else.
bool fromHex(const std::string &hex, Digest &out);

} // namespace heed

#endif
