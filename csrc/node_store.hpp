// The node arena: every node ever generated, addressed by a dense id (its index). Step tokens live
// in one flat token arena; a node refers to its step by (offset, length). Nothing is freed until
// the engine is dropped, so ids and paths stay valid for the whole search (pruned nodes included).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "types.hpp"

namespace qstar {

struct Node {
  NodeId parent = kNoNode;
  int32_t depth = 0;
  NodeStatus status = NodeStatus::Open;
  bool terminal = false;
  bool has_key = false;
  uint64_t token_offset = 0;  // the step's tokens: tokens[token_offset, token_offset + token_count)
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

class NodeStore {
 public:
  NodeId add(const Node& n, const Token* step, uint32_t count) {
    Node copy = n;
    copy.token_offset = tokens_.size();
    copy.token_count = count;
    tokens_.insert(tokens_.end(), step, step + count);
    nodes_.push_back(copy);
    keys_.emplace_back();
    return static_cast<NodeId>(nodes_.size() - 1);
  }

  // Points a node at a new step (used when a duplicate state is re-parented under a better path).
  void set_step(NodeId id, const Token* step, uint32_t count) {
    Node& n = nodes_[id];
    n.token_offset = tokens_.size();
    n.token_count = count;
    tokens_.insert(tokens_.end(), step, step + count);
  }

  void set_key(NodeId id, std::string key) {
    keys_[id] = std::move(key);
    nodes_[id].has_key = true;
  }

  bool contains(NodeId id) const { return id >= 0 && static_cast<size_t>(id) < nodes_.size(); }
  Node& operator[](NodeId id) { return nodes_[id]; }
  const Node& operator[](NodeId id) const { return nodes_[id]; }
  size_t size() const { return nodes_.size(); }
  const Token* step_tokens(NodeId id) const { return tokens_.data() + nodes_[id].token_offset; }
  const std::string& key(NodeId id) const { return keys_[id]; }

  // Root-first full token sequence of a node's state.
  std::vector<Token> state_tokens(NodeId id) const;
  // Root-first list of node ids on the path to id (inclusive).
  std::vector<NodeId> path(NodeId id) const;
  // Total number of tokens of a node's state, without materializing it. O(1), except in keyed
  // searches, where re-parenting a node changes its descendants' states: O(depth) there.
  uint64_t state_length(NodeId id) const;
  void mark_keyed() { keyed_ = true; }

 private:
  bool keyed_ = false;
  std::vector<Node> nodes_;
  std::vector<Token> tokens_;
  std::vector<std::string> keys_;
};

}  // namespace qstar
