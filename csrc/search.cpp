#include "search.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>

namespace qstar {

const char* to_string(NodeStatus s) {
  switch (s) {
    case NodeStatus::Open: return "open";
    case NodeStatus::Selected: return "selected";
    case NodeStatus::Expanded: return "expanded";
    case NodeStatus::Solution: return "solution";
    case NodeStatus::Pruned: return "pruned";
  }
  return "unknown";
}

const char* to_string(StopReason r) {
  switch (r) {
    case StopReason::Running: return "running";
    case StopReason::Solutions: return "solutions";
    case StopReason::Exhausted: return "exhausted";
    case StopReason::MaxExpansions: return "max_expansions";
    case StopReason::MaxNodes: return "max_nodes";
    case StopReason::MaxTokens: return "max_tokens";
  }
  return "unknown";
}

// ---- NodeStore ----------------------------------------------------------------------------

std::vector<NodeId> NodeStore::path(NodeId id) const {
  std::vector<NodeId> out;
  for (NodeId n = id; n != kNoNode; n = nodes_[n].parent) out.push_back(n);
  std::reverse(out.begin(), out.end());
  return out;
}

uint64_t NodeStore::state_length(NodeId id) const {
  uint64_t len = 0;
  for (NodeId n = id; n != kNoNode; n = nodes_[n].parent) len += nodes_[n].token_count;
  return len;
}

std::vector<Token> NodeStore::state_tokens(NodeId id) const {
  std::vector<Token> out;
  out.reserve(state_length(id));
  for (NodeId n : path(id)) {
    const Token* t = step_tokens(n);
    out.insert(out.end(), t, t + nodes_[n].token_count);
  }
  return out;
}

// ---- StateTable ---------------------------------------------------------------------------

NodeId StateTable::find_tokens(const NodeStore& store, uint64_t hash, NodeId parent, const Token* step,
                               size_t count) const {
  auto [lo, hi] = by_hash_.equal_range(hash);
  if (lo == hi) return kNoNode;
  // Confirm each candidate by comparing full sequences: the hash alone is never trusted.
  std::vector<Token> wanted = store.state_tokens(parent);
  wanted.insert(wanted.end(), step, step + count);
  for (auto it = lo; it != hi; ++it) {
    if (store.state_length(it->second) != wanted.size()) continue;
    if (store.state_tokens(it->second) == wanted) return it->second;
  }
  return kNoNode;
}

// ---- Engine -------------------------------------------------------------------------------

struct Engine::Timer {
  explicit Timer(double* sink) : sink_(sink), start_(std::chrono::steady_clock::now()) {}
  ~Timer() { *sink_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  double* sink_;
  std::chrono::steady_clock::time_point start_;
};

Status Engine::validate(const EngineConfig& c) {
  if (!std::isfinite(c.lam)) return Status::invalid_argument("lam must be a finite number, got " + std::to_string(c.lam));
  auto positive = [](int64_t v, const char* name) -> Status {
    if (v >= 1) return Status::ok();
    return Status::invalid_argument(std::string(name) + " must be at least 1 (or None for no limit), got " +
                                    std::to_string(v));
  };
  for (auto [v, name] : {std::pair{c.num_solutions, "num_solutions"}, {c.max_expansions, "max_expansions"},
                         {c.max_nodes, "max_nodes"}, {c.max_depth, "max_depth"}, {c.max_tokens, "max_tokens"},
                         {c.frontier_capacity, "frontier_capacity"}}) {
    Status s = positive(v, name);
    if (!s.is_ok()) return s;
  }
  if (c.vocab_size < 0)
    return Status::invalid_argument("vocab_size must be positive (or 0/None to skip the check), got " +
                                    std::to_string(c.vocab_size));
  return Status::ok();
}

Engine::Engine(EngineConfig config) : config_(config) {}

Status Engine::add_root(const Token* tokens, size_t count, double h, const std::string* key, NodeId* out) {
  Timer t(&stats_.engine_seconds);
  if (has_root_) return Status::invalid_state("this engine already has a root; use one engine per problem");
  if (!std::isfinite(h)) return Status::invalid_argument("root h must be finite, got " + std::to_string(h));
  for (size_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || (config_.vocab_size > 0 && tokens[i] >= config_.vocab_size))
      return Status::invalid_argument("root tokens[" + std::to_string(i) + "] = " + std::to_string(tokens[i]) +
                                      " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
  }
  Node n;
  n.h = h;
  n.f = config_.lam * h;
  n.state_hash = key ? std::hash<std::string>{}(*key) : extend_hash(kEmptyStateHash, tokens, count);
  NodeId id = store_.add(n, tokens, static_cast<uint32_t>(count));
  keyed_ = key != nullptr;
  if (config_.dedup) {
    if (keyed_) {
      store_.set_key(id, *key);
      states_.insert_key(*key, id);
    } else {
      states_.insert_tokens(n.state_hash, id);
    }
  } else if (keyed_) {
    store_.set_key(id, *key);
  }
  frontier_.push({n.f, id});
  has_root_ = true;
  *out = id;
  return Status::ok();
}

std::vector<NodeId> Engine::select(int64_t k) {
  Timer t(&stats_.engine_seconds);
  std::vector<NodeId> out;
  if (done() || !has_root_) return out;
  while (static_cast<int64_t>(out.size()) < k && !frontier_.empty()) {
    const FrontierEntry top = frontier_.best();
    Node& n = store_[top.id];
    if (n.terminal) {
      // A handed-out node that ranks before this terminal may still yield a better solution.
      if (!selected_.empty() && ranks_before(selected_.best(), top)) break;
      frontier_.pop_best();
      n.status = NodeStatus::Solution;
      solutions_.push_back(top.id);
      if (static_cast<int64_t>(solutions_.size()) >= config_.num_solutions) {
        stop_ = StopReason::Solutions;
        break;
      }
      continue;
    }
    if (stats_.expanded + static_cast<int64_t>(selected_.size()) >= config_.max_expansions) break;
    frontier_.pop_best();
    n.status = NodeStatus::Selected;
    selected_.push(top);
    out.push_back(top.id);
  }
  if (out.empty() && selected_.empty() && !done()) {
    stop_ = frontier_.empty() ? StopReason::Exhausted : StopReason::MaxExpansions;
  }
  return out;
}

Status Engine::validate_batch(const ChildBatch& b) const {
  std::unordered_set<NodeId> seen;
  int64_t total_children = 0;
  for (size_t j = 0; j < b.num_parents; ++j) {
    NodeId p = b.parents[j];
    if (!store_.contains(p))
      return Status::invalid_argument("node " + std::to_string(p) + " does not exist; expand only ids returned by select()");
    if (store_[p].status != NodeStatus::Selected) {
      const char* why = store_[p].status == NodeStatus::Expanded ? " was already expanded"
                                                                   : " was not handed out by select()";
      return Status::invalid_argument("node " + std::to_string(p) + why + " (status " +
                                      to_string(store_[p].status) + "); expand each selected node exactly once");
    }
    if (!seen.insert(p).second)
      return Status::invalid_argument("node " + std::to_string(p) + " appears twice in one expand call");
    if (b.child_counts[j] < 0)
      return Status::invalid_argument("child_counts[" + std::to_string(j) + "] is negative");
    total_children += b.child_counts[j];
  }
  if (static_cast<size_t>(total_children) != b.num_children)
    return Status::invalid_argument("child_counts sum to " + std::to_string(total_children) + " but " +
                                    std::to_string(b.num_children) + " children were given");
  if (b.keys && b.keys->size() != b.num_children)
    return Status::invalid_argument("keys has " + std::to_string(b.keys->size()) + " entries for " +
                                    std::to_string(b.num_children) + " children; give one key per child");
  if (config_.dedup && b.num_children > 0 && keyed_ != (b.keys != nullptr))
    return Status::invalid_argument(keyed_ ? "the root has a key, so every child needs a key"
                                           : "the root has no key, so children cannot have keys; "
                                             "pass key= to the root to de-duplicate by key");
  uint64_t token_total = 0;
  for (size_t i = 0; i < b.num_children; ++i) {
    const std::string at = "child " + std::to_string(i);
    if (b.step_lengths[i] <= 0)
      return Status::invalid_argument(at + " has an empty step (tokens); a step must have at least one token");
    if (b.step_lengths[i] > 0xFFFFFFFFLL) return Status::invalid_argument(at + " has a step longer than 2^32 tokens");
    token_total += static_cast<uint64_t>(b.step_lengths[i]);
    if (!std::isfinite(b.rewards[i]))
      return Status::invalid_argument(at + " has a non-finite reward (" + std::to_string(b.rewards[i]) +
                                      "); rewards must be finite numbers");
    if (!std::isfinite(b.q[i]))
      return Status::invalid_argument(at + " has a non-finite q (" + std::to_string(b.q[i]) +
                                      "); q values must be finite numbers");
  }
  if (token_total != b.num_tokens)
    return Status::invalid_argument("step lengths sum to " + std::to_string(token_total) + " but " +
                                    std::to_string(b.num_tokens) + " tokens were given");
  for (size_t i = 0; i < b.num_tokens; ++i) {
    Token tok = b.tokens[i];
    if (tok < 0 || (config_.vocab_size > 0 && tok >= config_.vocab_size))
      return Status::invalid_argument("token id " + std::to_string(tok) + " (flat index " + std::to_string(i) +
                                      ") is outside the vocabulary [0, " +
                                      (config_.vocab_size > 0 ? std::to_string(config_.vocab_size) : "inf") + ")");
  }
  // f must stay finite after aggregation (a product of large rewards can overflow).
  size_t i = 0;
  for (size_t j = 0; j < b.num_parents; ++j) {
    const Node& p = store_[b.parents[j]];
    for (int64_t c = 0; c < b.child_counts[j]; ++c, ++i) {
      double acc = extend_accumulator(config_.aggregate, p.acc, p.depth, b.rewards[i]);
      double f = aggregate_value(config_.aggregate, acc, p.depth + 1) + config_.lam * b.q[i];
      if (!std::isfinite(f))
        return Status::invalid_argument("child " + std::to_string(i) + " gets a non-finite f = g + lam*q; "
                                        "rescale rewards or q");
    }
  }
  return Status::ok();
}

void Engine::push_open(NodeId id) {
  Node& n = store_[id];
  n.status = NodeStatus::Open;
  frontier_.push({n.f, id});
}

void Engine::enforce_capacity() {
  while (static_cast<int64_t>(frontier_.size()) > config_.frontier_capacity) {
    FrontierEntry worst = frontier_.pop_worst();
    store_[worst.id].status = NodeStatus::Pruned;
    ++stats_.pruned_capacity;
  }
}

bool Engine::is_ancestor(NodeId maybe_ancestor, NodeId id) const {
  for (NodeId n = id; n != kNoNode; n = store_[n].parent)
    if (n == maybe_ancestor) return true;
  return false;
}

NodeId Engine::insert_child(NodeId parent, const Token* step, uint32_t count, double reward, double q,
                            bool terminal, const std::string* key) {
  const Node& p = store_[parent];
  uint64_t hash = key ? std::hash<std::string>{}(*key) : extend_hash(p.state_hash, step, count);
  if (config_.dedup) {
    NodeId existing = key ? states_.find_key(*key) : states_.find_tokens(store_, hash, parent, step, count);
    if (existing != kNoNode) {
      ++stats_.merged;
      merge_into(existing, parent, step, count, reward, q);
      return existing;
    }
  }
  if (static_cast<int64_t>(store_.size()) >= config_.max_nodes) {
    ++stats_.dropped_budget;
    stop_ = StopReason::MaxNodes;
    return kNoNode;
  }
  if (stats_.tokens + count > config_.max_tokens) {
    ++stats_.dropped_budget;
    stop_ = StopReason::MaxTokens;
    return kNoNode;
  }
  Node n;
  n.parent = parent;
  n.depth = p.depth + 1;
  n.terminal = terminal;
  n.state_hash = hash;
  n.reward = reward;
  n.acc = extend_accumulator(config_.aggregate, p.acc, p.depth, reward);
  n.g = aggregate_value(config_.aggregate, n.acc, n.depth);
  n.h = q;
  n.f = n.g + config_.lam * q;
  NodeId id = store_.add(n, step, count);
  stats_.tokens += count;
  if (key) store_.set_key(id, *key);
  if (config_.dedup) {
    if (key) states_.insert_key(*key, id);
    else states_.insert_tokens(hash, id);
  }
  if (!terminal && n.depth >= config_.max_depth) {
    store_[id].status = NodeStatus::Pruned;  // it could never reach a solution within max_depth
    ++stats_.pruned_depth;
  } else {
    push_open(id);
  }
  return id;
}

// A* with a closed set: a duplicate state keeps the better g. A better path re-parents the
// existing node, repositions it if open, and reopens it if already expanded.
void Engine::merge_into(NodeId existing, NodeId parent, const Token* step, uint32_t count, double reward,
                        double q) {
  Node& e = store_[existing];
  const Node& p = store_[parent];
  double acc = extend_accumulator(config_.aggregate, p.acc, p.depth, reward);
  int32_t depth = p.depth + 1;
  double g = aggregate_value(config_.aggregate, acc, depth);
  bool better = g > e.g;
  bool movable = e.status == NodeStatus::Open || e.status == NodeStatus::Selected || e.status == NodeStatus::Expanded;
  bool depth_ok = e.terminal || depth < config_.max_depth;
  if (!better || !movable || !depth_ok || existing == parent || is_ancestor(existing, parent)) return;
  FrontierEntry old{e.f, existing};
  e.parent = parent;
  e.depth = depth;
  e.reward = reward;
  e.acc = acc;
  e.g = g;
  e.h = q;
  e.f = g + config_.lam * q;
  store_.set_step(existing, step, count);
  stats_.tokens += count;
  if (e.status == NodeStatus::Open) {
    frontier_.erase(old);
    frontier_.push({e.f, existing});
  } else if (e.status == NodeStatus::Selected) {
    selected_.erase(old);
    selected_.push({e.f, existing});
  } else {  // Expanded: reopen so its children are regenerated from the better path
    ++stats_.reopened;
    push_open(existing);
  }
}

void Engine::update_stop_after_expand() {
  if (done()) return;
  if (frontier_.empty() && selected_.empty()) {
    stop_ = StopReason::Exhausted;
  } else if (selected_.empty() && stats_.expanded >= config_.max_expansions) {
    // Terminals on top of the frontier may still be accepted by select() without expanding.
    if (frontier_.empty() || !store_[frontier_.best().id].terminal) stop_ = StopReason::MaxExpansions;
  }
}

Status Engine::expand(const ChildBatch& b, std::vector<NodeId>* out) {
  Timer t(&stats_.engine_seconds);
  Status s = validate_batch(b);
  if (!s.is_ok()) return s;
  out->assign(b.num_children, kNoNode);
  size_t i = 0;
  const Token* tok = b.tokens;
  for (size_t j = 0; j < b.num_parents; ++j) {
    NodeId parent = b.parents[j];
    Node& p = store_[parent];
    selected_.erase({p.f, parent});
    p.status = NodeStatus::Expanded;
    ++stats_.expanded;
    for (int64_t c = 0; c < b.child_counts[j]; ++c, ++i) {
      uint32_t len = static_cast<uint32_t>(b.step_lengths[i]);
      ++stats_.generated;
      if (done() && stop_ != StopReason::Solutions) {
        ++stats_.dropped_budget;  // a node or token budget already ran out
      } else {
        (*out)[i] = insert_child(parent, tok, len, b.rewards[i], b.q[i], b.terminal[i] != 0,
                                 b.keys ? &(*b.keys)[i] : nullptr);
      }
      tok += len;
    }
  }
  enforce_capacity();
  update_stop_after_expand();
  return Status::ok();
}

Status Engine::release(const NodeId* ids, size_t count) {
  Timer t(&stats_.engine_seconds);
  for (size_t i = 0; i < count; ++i) {
    if (!store_.contains(ids[i]) || store_[ids[i]].status != NodeStatus::Selected)
      return Status::invalid_argument("node " + std::to_string(ids[i]) + " is not selected; release only "
                                      "nodes handed out by select() and not yet expanded");
  }
  for (size_t i = 0; i < count; ++i) {
    selected_.erase({store_[ids[i]].f, ids[i]});
    push_open(ids[i]);
  }
  if (stop_ == StopReason::MaxExpansions || stop_ == StopReason::Exhausted) stop_ = StopReason::Running;
  return Status::ok();
}

EngineStats Engine::stats() const {
  EngineStats s = stats_;
  s.frontier = static_cast<int64_t>(frontier_.size());
  s.selected = static_cast<int64_t>(selected_.size());
  s.nodes = static_cast<int64_t>(store_.size());
  s.solutions = static_cast<int64_t>(solutions_.size());
  return s;
}

std::vector<NodeId> Engine::frontier_snapshot(size_t limit) const {
  std::vector<NodeId> out;
  for (auto it = frontier_.begin(); it != frontier_.end() && out.size() < limit; ++it) out.push_back(it->id);
  return out;
}

}  // namespace qstar
