// The search engine of one problem, driven ask/tell:
//
//   add_root(tokens) -> select(k) -> [caller proposes and scores children] -> expand(children) -> ...
//
// Nodes are ranked by f = g + lambda * h, g the aggregate of the path's step rewards, h the
// caller's value estimate of the node. Two selection rules share everything else (store,
// de-duplication, budgets, KV pins):
//
//   BestFirst (A*): select(k) hands out up to k best open nodes; k = 1 is exact A*. A terminal on
//     top of the frontier is accepted as a solution only when no handed-out (still unexpanded)
//     node ranks before it: those may still produce better children, so batching never costs
//     optimality.
//   Beam (level by level): select(k) hands out nodes of the current level only. When the whole
//     level is expanded, its children are ranked and the best (beam_width - solutions so far) are
//     kept: terminals among them become solutions, the others form the next level; the rest are
//     pruned. An unlimited width keeps every child: that is sampling (best-of-N as a tree whose
//     nodes carry a sample count).
//
// KV pins: when the engine is linked to a PrefixCache, a child may bring a pin handle on its
// state's KV. The engine owns it from then on and holds it exactly while the node can still be
// expanded (open or selected, non-terminal, search running); expanding, pruning, merging,
// dropping, accepting or ending the search unpins at once. So at every return, the cache's pins
// are exactly the live nodes' pins, and zero once the search is done.
//
// Budgets end the search and say so in stop_reason(); nodes dropped by depth, frontier capacity
// or beam width are marked pruned and counted (never lost).
//
// Threading: an Engine has no global state; distinct engines may run in parallel threads (and
// share one PrefixCache, which locks itself). One engine locks a mutex in every public call, so
// concurrent use from several threads is serialized, never a data race.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "aggregate.hpp"
#include "frontier.hpp"
#include "node_store.hpp"
#include "prefix_cache.hpp"
#include "state_table.hpp"
#include "types.hpp"

namespace qstar {

enum class Selection : uint8_t { BestFirst, Beam };

struct EngineConfig {
  double lam = 1.0;
  Aggregate aggregate = Aggregate::Min;
  Selection selection = Selection::BestFirst;
  int64_t beam_width = kUnlimited;  // Beam: nodes kept per level (solutions count toward it)
  int64_t num_solutions = 1;
  int64_t max_expansions = kUnlimited;
  int64_t max_nodes = kUnlimited;
  int64_t max_steps = kUnlimited;  // a path has at most this many steps (node depth <= max_steps)
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
  const int64_t* samples = nullptr;     // per child, or nullptr (1): how many samples drew it
  const int64_t* kv_handles = nullptr;  // per child, or nullptr: pins the engine takes over (-1: none)
  const std::vector<std::string>* keys = nullptr;  // per child, or nullptr
};

struct EngineStats {
  int64_t expanded = 0;         // nodes whose children were taken back
  int64_t generated = 0;        // children received
  int64_t merged = 0;           // children whose state already had a node
  int64_t reopened = 0;         // merged children that improved an expanded node and reopened it
  int64_t pruned_depth = 0;     // non-terminal nodes at max_steps
  int64_t pruned_capacity = 0;  // worst open nodes dropped by frontier capacity or beam width
  int64_t dropped_budget = 0;   // children not stored because max_nodes or max_tokens ran out
  int64_t tokens = 0;           // step tokens stored over all children
  int64_t frontier = 0;
  int64_t selected = 0;  // handed out, not yet expanded
  int64_t nodes = 0;
  int64_t solutions = 0;
  int64_t pinned = 0;  // live nodes holding a KV pin
  double engine_seconds = 0.0;  // wall time spent inside engine calls
};

// A node as readers see it: everything but its tokens.
struct NodeInfo {
  NodeId id = kNoNode;
  NodeId parent = kNoNode;
  int32_t depth = 0;
  NodeStatus status = NodeStatus::Open;
  bool terminal = false;
  double reward = 0.0, g = 0.0, h = 0.0, f = 0.0;
  int64_t samples = 1;
  int64_t kv_handle = -1;
  uint64_t state_length = 0;
  const std::string* key = nullptr;  // valid while the engine lives; nullptr when unkeyed
};

class Engine {
 public:
  static Status validate(const EngineConfig& config);
  // config must pass validate(); cache (optional) is where children's KV pins live.
  Engine(EngineConfig config, std::shared_ptr<PrefixCache> cache);
  ~Engine();  // unpins whatever it still holds
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // The root state. Exactly one per engine; h is its value estimate (it only orders the root).
  Status add_root(const Token* tokens, size_t count, double h, const std::string* key, NodeId* out);

  // Hands out up to k best open nodes to expand (accepting terminals on top as solutions).
  std::vector<NodeId> select(int64_t k);

  // Takes back the scored children of selected nodes. All-or-nothing: on error nothing changes
  // (the children's pins stay the caller's). out receives, per child, the node it landed in (a
  // new node, the existing node of a duplicate state, or kNoNode when a budget dropped it).
  Status expand(const ChildBatch& batch, std::vector<NodeId>* out);

  // Puts selected nodes back on the frontier unexpanded (e.g. after the caller's model failed).
  Status release(const NodeId* ids, size_t count);

  // Drops every pin the engine holds (nodes stay as they are; their KV becomes evictable, and is
  // recomputed if evicted). For a caller whose KV pool is full: returns the pins dropped.
  int64_t shed_pins();

  bool done() const;
  StopReason stop_reason() const;
  std::vector<NodeId> solutions() const;
  EngineStats stats() const;
  const EngineConfig& config() const { return config_; }  // immutable after construction
  size_t num_nodes() const;

  // Readers: InvalidArgument for an unknown id.
  Status info(NodeId id, NodeInfo* out) const;
  Status infos(const NodeId* ids, size_t count, std::vector<NodeInfo>* out) const;
  Status step_tokens(NodeId id, std::vector<Token>* out) const;
  Status path(NodeId id, std::vector<NodeId>* out) const;
  // Full states (root + steps) of several nodes, concatenated; offsets has count + 1 entries.
  Status state_tokens(const NodeId* ids, size_t count, std::vector<Token>* tokens, std::vector<int64_t>* offsets) const;
  // The open nodes in rank order (best first), at most limit of them.
  std::vector<NodeId> frontier_snapshot(size_t limit) const;
  // Node ids holding a KV pin, ascending (for invariant checks).
  std::vector<NodeId> pinned_nodes() const;

 private:
  struct Timer;
  bool done_locked() const { return stop_ != StopReason::Running; }
  Status check_id(NodeId id) const;
  Status validate_batch(const ChildBatch& b);
  NodeId insert_child(NodeId parent, uint64_t hash, const Token* step, uint32_t count, double reward, double q,
                      bool terminal, int64_t samples, int64_t kv, const std::string* key);
  void merge_into(NodeId existing, NodeId parent, const Token* step, uint32_t count, double reward, double q,
                  int64_t kv);
  void push_open(NodeId id);
  void prune(NodeId id);
  void accept_solution(NodeId id);
  void enforce_capacity();
  void advance_level();
  bool is_ancestor(NodeId maybe_ancestor, NodeId id) const;
  void update_stop_after_expand();
  void stop(StopReason reason);
  void unpin_handle(int64_t kv);
  void drop_pin(NodeId id);
  void adopt_pin(NodeId id, int64_t kv);

  const EngineConfig config_;
  std::shared_ptr<PrefixCache> cache_;
  mutable std::mutex mu_;
  NodeStore store_;
  StateTable states_;
  Frontier frontier_;  // BestFirst: all open nodes. Beam: the open nodes of the current level.
  Frontier next_;      // Beam: children of the current level, ranked when the level is done
  Frontier selected_;  // handed-out nodes, ranked as they were when selected
  std::vector<NodeId> solutions_;
  EngineStats stats_;
  StopReason stop_ = StopReason::Running;
  int64_t pinned_ = 0;
  int32_t level_ = 0;  // Beam: depth of the current level
  bool has_root_ = false;
  bool keyed_ = false;
  // validate_batch's scratch, kept between calls so the happy path allocates nothing.
  std::vector<uint32_t> seen_;  // seen_[id] == seen_stamp_: id is a parent earlier in this call
  uint32_t seen_stamp_ = 0;
  std::vector<int64_t> handles_;
  std::vector<uint64_t> hashes_;  // expand's scratch: the children's state hashes
};

}  // namespace qstar
