// State de-duplication: maps a state to the node that holds it.
//
// A token state's hash is chained token by token from the parent's hash, so a child's hash costs
// O(step length) and equal full sequences hash equally however they were split into steps. A
// hash hit is only a candidate: it is confirmed by comparing the full token sequences, never
// trusted on the hash alone. The comparison walks both sequences backwards, step by step, without
// copying them, and stops early where both paths reach the same node at the same offset (a
// sibling's duplicate costs O(step length), not O(state length)). Caller-supplied keys are
// compared as strings.
//
// Token hashes live in an open-addressing table (linear probing, at most half full, never erased:
// nodes are never removed): one flat array, no allocation per entry. Distinct states may share a
// hash, so a lookup checks every entry with that hash along the probe run.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "node_store.hpp"
#include "types.hpp"

#if defined(__GNUC__)
#define QSTAR_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define QSTAR_NOINLINE __declspec(noinline)
#else
#define QSTAR_NOINLINE
#endif

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

// One token into the chain: a 64x64->128-bit multiply folded to 64 bits (the wyhash/mum step),
// about half the latency of a full splitmix64 round. The chain is serial (one token after the
// other), so its latency is the cost. Weak low bits do not matter: the table index is mixed again.
// Out of line on purpose: inlined into a larger loop, GCC 12 spills the 128-bit product to the
// stack, which doubles the chain's latency.
QSTAR_NOINLINE inline uint64_t extend_hash(uint64_t h, const Token* tokens, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    uint64_t x = h ^ (0x9e3779b97f4a7c15ULL + static_cast<uint32_t>(tokens[i]));
#if defined(__SIZEOF_INT128__)
    __uint128_t m = static_cast<__uint128_t>(x) * 0xbf58476d1ce4e5b9ULL;
    h = static_cast<uint64_t>(m) ^ static_cast<uint64_t>(m >> 64);
#else
    h = mix64(x);
#endif
  }
  return h;
}

class StateTable {
 public:
  // The node whose full token sequence equals parent's state + step, or kNoNode.
  NodeId find_tokens(const NodeStore& store, uint64_t hash, NodeId parent, const Token* step,
                     size_t count) const {
    if (slots_.empty()) return kNoNode;
    const uint64_t length = store[parent].state_length + count;
    for (size_t i = mix64(hash) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id == kNoNode) return kNoNode;
      if (s.hash == hash && store.state_length(s.id) == length && same_state(store, s.id, parent, step, count))
        return s.id;
    }
  }
  NodeId find_key(const std::string& key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? kNoNode : it->second;
  }
  // Starts loading the slot where a lookup of this hash begins.
  void prefetch(uint64_t hash) const {
#if defined(__GNUC__)
    if (!slots_.empty()) __builtin_prefetch(&slots_[mix64(hash) & mask_]);
#else
    (void)hash;
#endif
  }
  void insert_tokens(uint64_t hash, NodeId id) {
    if (2 * (used_ + 1) > slots_.size()) grow();
    place(hash, id);
    ++used_;
  }
  void insert_key(const std::string& key, NodeId id) { by_key_.emplace(key, id); }

 private:
  struct Slot {
    uint64_t hash = 0;
    NodeId id = kNoNode;  // kNoNode: empty
  };

  void place(uint64_t hash, NodeId id) {
    size_t i = mix64(hash) & mask_;
    while (slots_[i].id != kNoNode) i = (i + 1) & mask_;
    slots_[i] = Slot{hash, id};
  }

  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 64 : 2 * old.size(), Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old)
      if (s.id != kNoNode) place(s.hash, s.id);
  }

  // Whether node's state equals parent's state + step (both of the same length), compared from the
  // end backwards, step by step.
  static bool same_state(const NodeStore& store, NodeId node, NodeId parent, const Token* step, size_t count) {
    // a: the candidate's steps; b: the new step, then the parent's steps.
    NodeId a = node, b = kNoNode;
    const Token* ta = store.step_tokens(a);
    size_t ra = store[a].token_count;
    const Token* tb = step;
    size_t rb = count;
    NodeId b_next = parent;
    for (;;) {
      size_t n = ra < rb ? ra : rb;
      for (size_t i = 1; i <= n; ++i)
        if (ta[ra - i] != tb[rb - i]) return false;
      ra -= n;
      rb -= n;
      if (ra == 0) {
        a = store[a].parent;
        if (a == kNoNode) return true;  // equal lengths: b ends here too
        ta = store.step_tokens(a);
        ra = store[a].token_count;
      }
      if (rb == 0) {
        b = b_next;
        if (b == kNoNode) return true;
        b_next = store[b].parent;
        tb = store.step_tokens(b);
        rb = store[b].token_count;
      }
      if (a == b && ra == rb) return true;  // the same node at the same offset: the rest is shared
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t used_ = 0;
  std::unordered_map<std::string, NodeId> by_key_;
};

}  // namespace qstar
