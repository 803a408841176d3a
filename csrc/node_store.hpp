// The node arena: every node ever generated, addressed by a dense id. Nodes live in fixed-size
// blocks and step tokens in fixed-size chunks (a step is contiguous in one chunk; a step longer
// than a chunk gets a chunk of its own), so growing never moves or copies what is stored: no
// reallocation spikes, every page is touched once, and a node's token pointer stays valid.
// Nothing is freed until the engine is dropped, so ids and paths stay valid for the whole search
// (pruned nodes included). Keys (keyed searches only) live in a side table that stays empty in
// unkeyed searches.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "types.hpp"

namespace qstar {

struct Node {
  NodeId parent = kNoNode;
  int32_t depth = 0;
  NodeStatus status = NodeStatus::Open;
  bool terminal = false;
  bool has_key = false;
  const Token* tokens = nullptr;  // the step's tokens: tokens[0, token_count), in the store's arena
  uint32_t token_count = 0;
  uint64_t state_hash = 0;  // hash of the full token sequence (root + all steps), or of the key
  uint64_t state_length = 0;  // tokens of the full state (root + all steps); see state_length()
  int64_t samples = 1;        // how many of the parent's samples drew this step
  int64_t kv_handle = -1;     // the engine's pin on this state's KV in the prefix cache, or -1
  double reward = 0.0;      // R of this node's step
  double acc = 0.0;         // running aggregate of the path's rewards (see aggregate.hpp)
  double g = 0.0;
  double h = 0.0;
  double f = 0.0;
};
static_assert(std::is_trivially_copyable_v<Node> && std::is_trivially_destructible_v<Node>,
              "nodes are stored in raw blocks");

class NodeStore {
 public:
  NodeId add(const Node& n, const Token* step, uint32_t count) {
    if ((size_ & kBlockMask) == 0) blocks_.emplace_back(new Slot[kBlockSize]);  // uninitialized
    Node* slot = ::new (static_cast<void*>(&blocks_.back()[size_ & kBlockMask])) Node(n);
    slot->tokens = append_tokens(step, count);
    slot->token_count = count;
    terminal_.push_back(n.terminal);
    return static_cast<NodeId>(size_++);
  }

  // Points a node at a new step (used when a duplicate state is re-parented under a better path).
  void set_step(NodeId id, const Token* step, uint32_t count) {
    Node& n = (*this)[id];
    n.tokens = append_tokens(step, count);
    n.token_count = count;
  }

  void set_key(NodeId id, std::string key) {
    if (static_cast<size_t>(id) >= keys_.size()) keys_.resize(static_cast<size_t>(id) + 1);
    keys_[id] = std::move(key);
    (*this)[id].has_key = true;
  }

  bool contains(NodeId id) const { return id >= 0 && static_cast<size_t>(id) < size_; }
  Node& operator[](NodeId id) {
    auto i = static_cast<size_t>(id);
    return *std::launder(reinterpret_cast<Node*>(&blocks_[i >> kBlockBits][i & kBlockMask]));
  }
  const Node& operator[](NodeId id) const {
    auto i = static_cast<size_t>(id);
    return *std::launder(reinterpret_cast<const Node*>(&blocks_[i >> kBlockBits][i & kBlockMask]));
  }
  size_t size() const { return size_; }
  const Token* step_tokens(NodeId id) const { return (*this)[id].tokens; }
  // Node::terminal, from a dense copy (a terminal never changes): select() checks it for every
  // frontier top without touching the node's cache lines.
  bool terminal(NodeId id) const { return terminal_[static_cast<size_t>(id)] != 0; }
  const std::string& key(NodeId id) const { return keys_[id]; }  // only when has_key

  // Root-first list of node ids on the path to id (inclusive).
  std::vector<NodeId> path(NodeId id) const;
  // Total number of tokens of a node's state, without materializing it. O(1), except in keyed
  // searches, where re-parenting a node changes its descendants' states: O(depth) there.
  uint64_t state_length(NodeId id) const;
  void mark_keyed() { keyed_ = true; }

 private:
  static constexpr size_t kBlockBits = 12;  // 4096 nodes (~400 KiB) per block
  static constexpr size_t kBlockSize = size_t{1} << kBlockBits;
  static constexpr size_t kBlockMask = kBlockSize - 1;
  static constexpr size_t kChunkTokens = size_t{1} << 16;  // 256 KiB per token chunk
  struct Slot {
    alignas(Node) unsigned char bytes[sizeof(Node)];
  };

  const Token* append_tokens(const Token* step, size_t count) {
    if (count > chunk_left_) {
      size_t size = count > kChunkTokens ? count : kChunkTokens;
      chunks_.emplace_back(new Token[size]);  // uninitialized
      chunk_next_ = chunks_.back().get();
      chunk_left_ = size;
    }
    Token* out = chunk_next_;
    if (count) std::memcpy(out, step, count * sizeof(Token));
    chunk_next_ += count;
    chunk_left_ -= count;
    return out;
  }

  bool keyed_ = false;
  size_t size_ = 0;
  std::vector<std::unique_ptr<Slot[]>> blocks_;
  std::vector<std::unique_ptr<Token[]>> chunks_;
  Token* chunk_next_ = nullptr;
  size_t chunk_left_ = 0;
  std::vector<uint8_t> terminal_;  // by id
  std::vector<std::string> keys_;  // by id, up to the last keyed node
};

}  // namespace qstar
