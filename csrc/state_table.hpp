// State de-duplication: maps a state to the node that holds it.
//
// A token state's hash is chained token by token from the parent's hash, so a child's hash costs
// O(step length) and equal full sequences hash equally however they were split into steps. A
// hash hit is only a candidate: it is confirmed by comparing the full token sequences, never
// trusted on the hash alone. Caller-supplied keys are compared as strings.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "node_store.hpp"
#include "types.hpp"

namespace qstar {

inline uint64_t mix64(uint64_t x) {  // splitmix64 finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline constexpr uint64_t kEmptyStateHash = 0x243f6a8885a308d3ULL;

inline uint64_t extend_hash(uint64_t h, const Token* tokens, size_t count) {
  for (size_t i = 0; i < count; ++i) h = mix64(h ^ (0x9e3779b97f4a7c15ULL + static_cast<uint32_t>(tokens[i])));
  return h;
}

class StateTable {
 public:
  // The node whose full token sequence equals parent's state + step, or kNoNode.
  NodeId find_tokens(const NodeStore& store, uint64_t hash, NodeId parent, const Token* step,
                     size_t count) const;
  NodeId find_key(const std::string& key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? kNoNode : it->second;
  }
  void insert_tokens(uint64_t hash, NodeId id) { by_hash_.emplace(hash, id); }
  void insert_key(const std::string& key, NodeId id) { by_key_.emplace(key, id); }

 private:
  std::unordered_multimap<uint64_t, NodeId> by_hash_;
  std::unordered_map<std::string, NodeId> by_key_;
};

}  // namespace qstar
