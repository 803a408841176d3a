// The KV prefix cache: which token prefixes already have KV in the caller's paged pool.
//
// The pool is num_blocks blocks of block_size token slots (slot = block * block_size + offset).
// Every block is exactly one of: free; cached (held by the radix tree for a token prefix); or
// caller-owned (handed out by allocate(), not yet insert()ed or free()d). The caller computes KV
// only for tokens past match(), into slots from allocate(), and gives the sequence back to insert().
//
// Why a radix tree (as SGLang's RadixCache, page = block) and not vLLM's chained block hashes:
//   - Eviction must take only blocks with no cached continuation (a block's KV is useless once
//     its prefix is gone). The tree has those directly (the tails of leaves); a flat hash table
//     needs per-block child counts, or evicts inner blocks and strands their descendants.
//   - Pinning a frontier node's prefix is one walk to the root adding to lock counts, and
//     everything under a locked node's ancestors stays reachable.
//   - A hit is confirmed by comparing tokens, never trusted on a 64-bit hash (as the state table
//     does); children are found by a hash of their first block, then compared.
// NOTE: only whole blocks are cached. A sequence's trailing partial block goes back to the free
// list, so the caller recomputes at most block_size - 1 tokens; with block_size = 1 (the default)
// nothing is recomputed. Copy-on-write partial blocks would save that at the cost of a refcount
// per block and a copy step in the caller's pool; search steps are long enough that we skip it.
//
// A tree node holds a run of whole blocks; match, insert and pin split a node where the queried
// prefix ends inside it, so every block of a node was last used at the same time and a lock
// covers exactly the pinned prefix.
//
// LRU: a logical clock (not wall time) stamps every node on the path of each match, insert and
// pin. Eviction takes one block at a time: the last block of the unlocked leaf with the smallest
// (stamp, last block id). Taking a leaf's last block may empty it and make its parent a leaf. Free
// blocks are handed out lowest id first (a min-heap). So block ids and eviction order are a pure
// function of the call sequence, and tests assert them exactly.
//
// match() does not lock: a caller that allocates after matching must pin() the prefix first, or
// the allocation may evict the blocks it matched.
//
// Growth: grow() adds free blocks (the caller grows its pool first), so a pool can start small
// and be sized by need up to a cap.
//
// Threading: every public call locks the cache's mutex, so engines in parallel threads can share
// one cache (an engine calls unpin() while holding its own lock; the cache never calls out).
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "types.hpp"

namespace qstar {

struct PrefixCacheStats {
  int64_t hit_tokens = 0;       // tokens match() found cached
  int64_t computed_tokens = 0;  // tokens insert() newly cached
  int64_t evictions = 0;        // blocks evicted to make room
  int64_t blocks_in_use = 0;    // cached + caller-owned
  int64_t free_blocks = 0;
  int64_t pinned_blocks = 0;    // cached blocks on a locked path
  int64_t num_blocks = 0;
  int64_t block_size = 0;
};

class PrefixCache {
 public:
  static Status validate(int64_t num_blocks, int64_t block_size);
  PrefixCache(int64_t num_blocks, int64_t block_size);  // arguments must pass validate()
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The slots of the longest cached block-aligned prefix of tokens (slots->size() tokens).
  Status match(const Token* tokens, size_t count, std::vector<int64_t>* slots);
  // Slots for num_tokens new tokens in fresh caller-owned blocks, evicting LRU blocks if needed.
  // When even eviction cannot make room, sets *cache_full and changes nothing.
  Status allocate(int64_t num_tokens, std::vector<int64_t>* slots, bool* cache_full);
  // Caches the block-aligned part of tokens, whose KV sits in slots (one per token). All or
  // nothing: on error nothing changes.
  Status insert(const Token* tokens, size_t count, const int64_t* slots, size_t num_slots);
  // Returns the caller-owned blocks holding these slots to the free list.
  Status free(const int64_t* slots, size_t count);
  // Locks the cached path of the longest cached prefix of tokens until unpin(*handle).
  Status pin(const Token* tokens, size_t count, int64_t* handle);
  Status unpin(int64_t handle);
  bool has_pin(int64_t handle) const;
  int64_t num_pins() const;
  // Adds free blocks up to new_num_blocks (never shrinks).
  Status grow(int64_t new_num_blocks);
  // Forgets every cached prefix (all blocks free, counters zero). InvalidState while pins or
  // caller-owned blocks exist.
  Status clear();

  PrefixCacheStats stats() const;
  // Block ids on the path a pin locks, root first; and every block on a locked path, ascending.
  Status pin_blocks(int64_t handle, std::vector<int32_t>* blocks) const;
  std::vector<int32_t> pinned_block_ids() const;
  // Ok, or InvalidState naming the first broken invariant. O(num_blocks + tree size): for tests.
  Status check_invariants() const;
  int64_t num_blocks() const;
  int64_t block_size() const { return block_size_; }

 private:
  enum class BlockState : uint8_t { Free, Cached, Owned };
  using EvictKey = std::pair<uint64_t, int32_t>;  // (last access, last block id)

  struct RadixNode {
    int32_t parent = -1;
    uint64_t key = 0;           // hash of the first block's tokens: this node's key in its parent
    std::vector<Token> tokens;  // blocks.size() * block_size tokens
    std::vector<int32_t> blocks;
    std::unordered_multimap<uint64_t, int32_t> children;  // by key; confirmed by tokens
    int64_t lock = 0;  // pins on this node or below
    uint64_t last_access = 0;
    bool evictable = false;  // in evictable_ under evict_key
    EvictKey evict_key{0, 0};
  };

  Status check_tokens(const Token* tokens, size_t count) const;
  uint64_t hash_block(const Token* block) const;
  int32_t find_child(int32_t node, const Token* block) const;
  size_t common_blocks(int32_t node, const Token* tokens, size_t max_blocks) const;
  size_t cached_path(const Token* tokens, size_t num_blocks, std::vector<int32_t>* blocks) const;
  int32_t descend(const Token* tokens, size_t num_blocks);
  int32_t split(int32_t node, size_t keep_blocks);
  int32_t new_node();
  void touch(int32_t node);
  void sync_evictable(int32_t node);
  void lock(int32_t node);
  void unlock(int32_t node);
  void evict_one();
  void push_free(int32_t block);
  int32_t pop_free();
  void append_path_slots(int32_t node, std::vector<int64_t>* slots) const;

  mutable std::mutex mu_;
  int64_t num_blocks_;
  const int64_t block_size_;
  std::vector<BlockState> state_;  // per block
  std::vector<int32_t> owner_;     // per block: the tree node holding a cached block, else -1
  std::vector<int32_t> free_;      // min-heap of free block ids
  int64_t cached_blocks_ = 0;
  int64_t owned_blocks_ = 0;
  int64_t pinned_blocks_ = 0;
  std::vector<RadixNode> nodes_;  // nodes_[0] is the root (no blocks)
  std::vector<int32_t> dead_nodes_;
  std::set<EvictKey> evictable_;  // unlocked non-root leaves, LRU first
  std::unordered_map<int64_t, int32_t> pins_;  // handle -> node
  int64_t next_handle_ = 1;
  uint64_t clock_ = 0;
  PrefixCacheStats counters_;  // hit_tokens, computed_tokens, evictions
};

}  // namespace qstar
