// The A* search engine, driven ask/tell:
//
//   add_root(tokens) -> select(k) -> [caller scores children] -> expand(children) -> select(k) ...
//
// Nodes are ranked by f = g + lambda * h, g the aggregate of the path's step rewards, h the
// caller's value estimate of the node (the Q-value of the step that made it). select(k) hands out
// up to k best open nodes; k = 1 is exact A*. A terminal node on top of the frontier is accepted
// as a solution only when no handed-out (still unexpanded) node ranks before it: those may still
// produce better children, so batching never costs optimality. Budgets end the search and say so
// in stop_reason(); nodes dropped by depth or frontier capacity are marked pruned and counted.
//
// Threading: an Engine has no global state; distinct engines may run in parallel threads. One
// engine is not synchronized.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "aggregate.hpp"
#include "frontier.hpp"
#include "node_store.hpp"
#include "state_table.hpp"
#include "types.hpp"

namespace qstar {

struct EngineConfig {
  double lam = 1.0;
  Aggregate aggregate = Aggregate::Min;
  int64_t num_solutions = 1;
  int64_t max_expansions = kUnlimited;
  int64_t max_nodes = kUnlimited;
  int64_t max_depth = kUnlimited;  // a path has at most this many steps
  int64_t max_tokens = kUnlimited;  // total step tokens over all generated children
  int64_t frontier_capacity = kUnlimited;
  int64_t vocab_size = 0;  // 0: token ids are not range-checked (beyond being non-negative)
  bool dedup = true;
};

// Scored children of one or more selected nodes, as flat arrays (one copy from Python, no
// per-child objects). Child i belongs to parents[j] for the j whose count range holds i.
struct ChildBatch {
  const NodeId* parents = nullptr;
  size_t num_parents = 0;
  const int64_t* child_counts = nullptr;  // per parent
  const Token* tokens = nullptr;           // all children's step tokens, concatenated
  size_t num_tokens = 0;
  const int64_t* step_lengths = nullptr;  // per child
  const double* rewards = nullptr;        // per child
  const double* q = nullptr;              // per child: h of the child node
  const uint8_t* terminal = nullptr;      // per child
  size_t num_children = 0;
  const std::vector<std::string>* keys = nullptr;  // per child, or nullptr
};

struct EngineStats {
  int64_t expanded = 0;         // nodes whose children were taken back
  int64_t generated = 0;        // children received
  int64_t merged = 0;           // children whose state already had a node
  int64_t reopened = 0;         // merged children that improved an expanded node and reopened it
  int64_t pruned_depth = 0;     // non-terminal nodes at max_depth
  int64_t pruned_capacity = 0;  // worst open nodes dropped to keep the frontier within capacity
  int64_t dropped_budget = 0;   // children not stored because max_nodes or max_tokens ran out
  int64_t tokens = 0;           // step tokens stored over all children
  int64_t frontier = 0;
  int64_t selected = 0;  // handed out, not yet expanded
  int64_t nodes = 0;
  int64_t solutions = 0;
  double engine_seconds = 0.0;  // wall time spent inside engine calls
};

class Engine {
 public:
  static Status validate(const EngineConfig& config);
  explicit Engine(EngineConfig config);  // config must pass validate()

  // The root state. Exactly one per engine; h is its value estimate (it only orders the root).
  Status add_root(const Token* tokens, size_t count, double h, const std::string* key, NodeId* out);

  // Hands out up to k best open nodes to expand (accepting terminals on top as solutions).
  std::vector<NodeId> select(int64_t k);

  // Takes back the scored children of selected nodes. All-or-nothing: on error nothing changes.
  // out receives, per child, the node it landed in (a new node, the existing node of a duplicate
  // state, or kNoNode when a budget dropped it).
  Status expand(const ChildBatch& batch, std::vector<NodeId>* out);

  // Puts selected nodes back on the frontier unexpanded (e.g. after the caller's model failed).
  Status release(const NodeId* ids, size_t count);

  bool done() const { return stop_ != StopReason::Running; }
  StopReason stop_reason() const { return stop_; }
  const std::vector<NodeId>& solutions() const { return solutions_; }
  EngineStats stats() const;
  const EngineConfig& config() const { return config_; }
  const NodeStore& nodes() const { return store_; }
  // The open nodes in rank order (best first), at most limit of them.
  std::vector<NodeId> frontier_snapshot(size_t limit) const;

 private:
  struct Timer;
  Status validate_batch(const ChildBatch& b) const;
  NodeId insert_child(NodeId parent, const Token* step, uint32_t count, double reward, double q,
                      bool terminal, const std::string* key);
  void merge_into(NodeId existing, NodeId parent, const Token* step, uint32_t count, double reward,
                  double q);
  void push_open(NodeId id);
  void enforce_capacity();
  bool is_ancestor(NodeId maybe_ancestor, NodeId id) const;
  void update_stop_after_expand();

  EngineConfig config_;
  NodeStore store_;
  StateTable states_;
  Frontier frontier_;
  Frontier selected_;  // handed-out nodes, ranked as they were when selected
  std::vector<NodeId> solutions_;
  EngineStats stats_;
  StopReason stop_ = StopReason::Running;
  bool has_root_ = false;
  bool keyed_ = false;
};

}  // namespace qstar
