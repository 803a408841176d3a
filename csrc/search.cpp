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
  for (NodeId n = id; n != kNoNode; n = (*this)[n].parent) out.push_back(n);
  std::reverse(out.begin(), out.end());
  return out;
}

uint64_t NodeStore::state_length(NodeId id) const {
  if (!keyed_) return (*this)[id].state_length;
  uint64_t len = 0;
  for (NodeId n = id; n != kNoNode; n = (*this)[n].parent) len += (*this)[n].token_count;
  return len;
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
                         {c.max_nodes, "max_nodes"}, {c.max_steps, "max_steps"}, {c.max_tokens, "max_tokens"},
                         {c.frontier_capacity, "frontier_capacity"}, {c.beam_width, "beam_width"}}) {
    Status s = positive(v, name);
    if (!s.is_ok()) return s;
  }
  if (c.selection == Selection::BestFirst && c.beam_width != kUnlimited)
    return Status::invalid_argument("beam_width applies to selection='beam' only; leave it None for best-first");
  if (c.vocab_size < 0)
    return Status::invalid_argument("vocab_size must be positive (or 0/None to skip the check), got " +
                                    std::to_string(c.vocab_size));
  return Status::ok();
}

Engine::Engine(EngineConfig config, std::shared_ptr<PrefixCache> cache)
    : config_(config), cache_(std::move(cache)), frontier_(config.frontier_capacity != kUnlimited) {}

Engine::~Engine() {
  if (!cache_) return;
  for (size_t i = 0; i < store_.size(); ++i)
    if (store_[static_cast<NodeId>(i)].kv_handle >= 0) cache_->unpin(store_[static_cast<NodeId>(i)].kv_handle);
}

// ---- pins ---------------------------------------------------------------------------------

void Engine::unpin_handle(int64_t kv) {
  if (kv >= 0 && cache_) cache_->unpin(kv);  // validated handle: cannot fail
}

void Engine::drop_pin(NodeId id) {
  if (pinned_ == 0) return;  // no node holds a pin (and the node need not be read)
  Node& n = store_[id];
  if (n.kv_handle < 0) return;
  unpin_handle(n.kv_handle);
  n.kv_handle = -1;
  --pinned_;
}

// A node holds a pin only while it can still be expanded; otherwise the handle goes at once.
void Engine::adopt_pin(NodeId id, int64_t kv) {
  if (kv < 0) return;
  Node& n = store_[id];
  bool live = (n.status == NodeStatus::Open || n.status == NodeStatus::Selected) && !n.terminal && !done_locked();
  if (!live || n.kv_handle >= 0) {
    unpin_handle(kv);
    return;
  }
  n.kv_handle = kv;
  ++pinned_;
}

void Engine::stop(StopReason reason) {
  stop_ = reason;
  if (pinned_ == 0) return;
  for (size_t i = 0; i < store_.size(); ++i) drop_pin(static_cast<NodeId>(i));
}

// ---- root and select ----------------------------------------------------------------------

Status Engine::add_root(const Token* tokens, size_t count, double h, const std::string* key, NodeId* out) {
  std::lock_guard<std::mutex> lock(mu_);
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
  n.state_length = count;
  n.state_hash = key ? std::hash<std::string>{}(*key) : extend_hash(kEmptyStateHash, tokens, count);
  NodeId id = store_.add(n, tokens, static_cast<uint32_t>(count));
  keyed_ = key != nullptr;
  if (keyed_) {
    store_.mark_keyed();
    store_.set_key(id, *key);
  }
  if (config_.dedup) {
    if (keyed_) states_.insert_key(*key, id);
    else states_.insert_tokens(n.state_hash, id);
  }
  frontier_.push({n.f, id});
  has_root_ = true;
  *out = id;
  return Status::ok();
}

void Engine::accept_solution(NodeId id) {
  store_[id].status = NodeStatus::Solution;
  drop_pin(id);
  solutions_.push_back(id);
}

std::vector<NodeId> Engine::select(int64_t k) {
  std::lock_guard<std::mutex> lock(mu_);
  Timer t(&stats_.engine_seconds);
  std::vector<NodeId> out;
  if (done_locked() || !has_root_) return out;
  out.reserve(static_cast<size_t>(std::min<int64_t>(k, static_cast<int64_t>(frontier_.size()))));
  while (static_cast<int64_t>(out.size()) < k && !frontier_.empty()) {
    const FrontierEntry top = frontier_.best();
    if (store_.terminal(top.id)) {  // BestFirst only: in Beam mode terminals are settled when a level ends
      // A handed-out node that ranks before this terminal may still yield a better solution.
      if (!selected_.empty() && ranks_before(selected_.best(), top)) break;
      frontier_.pop_best();
      accept_solution(top.id);
      if (static_cast<int64_t>(solutions_.size()) >= config_.num_solutions) {
        stop(StopReason::Solutions);
        break;
      }
      continue;
    }
    if (stats_.expanded + static_cast<int64_t>(selected_.size()) >= config_.max_expansions) break;
    frontier_.pop_best();
    store_[top.id].status = NodeStatus::Selected;
    selected_.push(top);
    out.push_back(top.id);
  }
  if (out.empty() && selected_.empty() && !done_locked()) {
    stop(frontier_.empty() ? StopReason::Exhausted : StopReason::MaxExpansions);
  }
  return out;
}

// ---- expand -------------------------------------------------------------------------------

// Every check of an expand call, in a fixed order (the first failure is reported). Messages are
// built only on failure; the happy path allocates nothing.
Status Engine::validate_batch(const ChildBatch& b) {
  // A parent seen earlier in this call has seen_[id] == seen_stamp_ (no per-call set to allocate).
  if (++seen_stamp_ == 0) {
    std::fill(seen_.begin(), seen_.end(), 0u);
    seen_stamp_ = 1;
  }
  if (seen_.size() < store_.size()) seen_.resize(std::max(store_.size(), 2 * seen_.size()), 0u);
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
    if (seen_[static_cast<size_t>(p)] == seen_stamp_)
      return Status::invalid_argument("node " + std::to_string(p) + " appears twice in one expand call");
    seen_[static_cast<size_t>(p)] = seen_stamp_;
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
  if (b.kv_handles && !cache_)
    return Status::invalid_argument("kv_handles given, but this engine has no prefix cache; create it with cache=");
  // Repeated pins are rare: look for one once (sorted copy), track them child by child only then.
  bool repeats = false;
  if (b.kv_handles) {
    handles_.clear();
    for (size_t i = 0; i < b.num_children; ++i)
      if (b.kv_handles[i] >= 0) handles_.push_back(b.kv_handles[i]);
    std::sort(handles_.begin(), handles_.end());
    repeats = std::adjacent_find(handles_.begin(), handles_.end()) != handles_.end();
  }
  std::unordered_set<int64_t> handles;  // only filled when repeats
  uint64_t token_total = 0;
  for (size_t i = 0; i < b.num_children; ++i) {
    auto at = [i] { return "child " + std::to_string(i); };
    if (b.step_lengths[i] <= 0)
      return Status::invalid_argument(at() + " has an empty step (tokens); a step must have at least one token");
    if (b.step_lengths[i] > 0xFFFFFFFFLL) return Status::invalid_argument(at() + " has a step longer than 2^32 tokens");
    token_total += static_cast<uint64_t>(b.step_lengths[i]);
    if (!std::isfinite(b.rewards[i]))
      return Status::invalid_argument(at() + " has a non-finite reward (" + std::to_string(b.rewards[i]) +
                                      "); rewards must be finite numbers");
    if (!std::isfinite(b.q[i]))
      return Status::invalid_argument(at() + " has a non-finite q (" + std::to_string(b.q[i]) +
                                      "); q values must be finite numbers");
    if (b.samples && b.samples[i] < 1)
      return Status::invalid_argument(at() + " has samples = " + std::to_string(b.samples[i]) +
                                      "; a step is drawn by at least one sample");
    if (b.kv_handles && b.kv_handles[i] >= 0) {
      int64_t h = b.kv_handles[i];
      if (repeats && !handles.insert(h).second)
        return Status::invalid_argument(at() + " repeats kv handle " + std::to_string(h) + "; each pin belongs to one child");
      if (!cache_->has_pin(h))
        return Status::invalid_argument(at() + " has kv handle " + std::to_string(h) +
                                        ", which is no live pin of the engine's prefix cache");
    }
  }
  if (token_total != b.num_tokens)
    return Status::invalid_argument("step lengths sum to " + std::to_string(token_total) + " but " +
                                    std::to_string(b.num_tokens) + " tokens were given");
  // One vectorizable pass for the range; the offending token is looked for only on failure.
  Token lo = 0, hi = 0;
  for (size_t i = 0; i < b.num_tokens; ++i) {
    lo = std::min(lo, b.tokens[i]);
    hi = std::max(hi, b.tokens[i]);
  }
  bool in_range = lo >= 0 && (config_.vocab_size <= 0 || hi < config_.vocab_size);
  for (size_t i = 0; !in_range && i < b.num_tokens; ++i) {
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

void Engine::prune(NodeId id) {
  store_[id].status = NodeStatus::Pruned;
  drop_pin(id);
}

void Engine::enforce_capacity() {
  while (static_cast<int64_t>(frontier_.size()) > config_.frontier_capacity) {
    prune(frontier_.pop_worst().id);
    ++stats_.pruned_capacity;
  }
}

// Beam: the level is fully expanded; keep the best (beam_width - solutions) of its children.
void Engine::advance_level() {
  if (next_.empty()) return;
  ++level_;
  int64_t keep = config_.beam_width == kUnlimited ? kUnlimited
                                                  : config_.beam_width - static_cast<int64_t>(solutions_.size());
  int64_t kept = 0;
  for (const FrontierEntry& e : next_.ranked(next_.size())) {
    if (kept < keep) {
      ++kept;
      if (store_[e.id].terminal) accept_solution(e.id);
      else frontier_.push(e);
    } else {
      prune(e.id);
      ++stats_.pruned_capacity;
    }
  }
  next_.clear();
  if (static_cast<int64_t>(solutions_.size()) >= config_.num_solutions) stop(StopReason::Solutions);
}

bool Engine::is_ancestor(NodeId maybe_ancestor, NodeId id) const {
  for (NodeId n = id; n != kNoNode; n = store_[n].parent)
    if (n == maybe_ancestor) return true;
  return false;
}

// hash: the child's state hash (of its key, when keyed).
NodeId Engine::insert_child(NodeId parent, uint64_t hash, const Token* step, uint32_t count, double reward, double q,
                            bool terminal, int64_t samples, int64_t kv, const std::string* key) {
  const Node& p = store_[parent];
  if (config_.dedup) {
    NodeId existing = key ? states_.find_key(*key) : states_.find_tokens(store_, hash, parent, step, count);
    if (existing != kNoNode) {
      ++stats_.merged;
      merge_into(existing, parent, step, count, reward, q, kv);
      return existing;
    }
  }
  if (static_cast<int64_t>(store_.size()) >= config_.max_nodes || stats_.tokens + count > config_.max_tokens) {
    ++stats_.dropped_budget;
    unpin_handle(kv);
    stop(static_cast<int64_t>(store_.size()) >= config_.max_nodes ? StopReason::MaxNodes : StopReason::MaxTokens);
    return kNoNode;
  }
  Node n;
  n.parent = parent;
  n.depth = p.depth + 1;
  n.terminal = terminal;
  n.state_hash = hash;
  n.state_length = p.state_length + count;
  n.samples = samples;
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
  if (!terminal && store_[id].depth >= config_.max_steps) {
    store_[id].status = NodeStatus::Pruned;  // it could never reach a solution within max_steps
    ++stats_.pruned_depth;
  } else if (config_.selection == Selection::Beam) {
    next_.push({store_[id].f, id});  // status Open, ranked when the level ends
  } else {
    push_open(id);
  }
  adopt_pin(id, kv);
  return id;
}

// A* with a closed set: a duplicate state keeps the better g. A better path re-parents the
// existing node, repositions it if open, and reopens it if already expanded. In Beam mode only
// a node of the level being built can move (levels are never revisited).
void Engine::merge_into(NodeId existing, NodeId parent, const Token* step, uint32_t count, double reward, double q,
                        int64_t kv) {
  Node& e = store_[existing];
  const Node& p = store_[parent];
  double acc = extend_accumulator(config_.aggregate, p.acc, p.depth, reward);
  int32_t depth = p.depth + 1;
  double g = aggregate_value(config_.aggregate, acc, depth);
  bool better = g > e.g;
  bool beam = config_.selection == Selection::Beam;
  bool in_next = beam && e.status == NodeStatus::Open && e.depth == level_ + 1;
  bool movable = beam ? in_next
                      : e.status == NodeStatus::Open || e.status == NodeStatus::Selected ||
                            e.status == NodeStatus::Expanded;
  bool depth_ok = e.terminal || depth < config_.max_steps;
  if (beam) depth_ok = depth_ok && depth == level_ + 1;
  if (!better || !movable || !depth_ok || existing == parent || is_ancestor(existing, parent)) {
    unpin_handle(kv);
    return;
  }
  FrontierEntry old{e.f, existing};
  e.parent = parent;
  e.depth = depth;
  e.reward = reward;
  e.acc = acc;
  e.g = g;
  e.h = q;
  e.f = g + config_.lam * q;
  e.state_length = p.state_length + count;
  store_.set_step(existing, step, count);
  stats_.tokens += count;
  if (in_next) {
    next_.erase(old);
    next_.push({e.f, existing});
  } else if (e.status == NodeStatus::Open) {
    frontier_.erase(old);
    frontier_.push({e.f, existing});
  } else if (e.status == NodeStatus::Selected) {
    selected_.erase(old);
    selected_.push({e.f, existing});
  } else {  // Expanded: reopen so its children are regenerated from the better path
    ++stats_.reopened;
    push_open(existing);
  }
  adopt_pin(existing, kv);
}

void Engine::update_stop_after_expand() {
  if (done_locked()) return;
  if (frontier_.empty() && selected_.empty() && next_.empty()) {
    stop(StopReason::Exhausted);
  } else if (selected_.empty() && stats_.expanded >= config_.max_expansions) {
    // Terminals on top of the frontier may still be accepted by select() without expanding.
    if (frontier_.empty() || !store_[frontier_.best().id].terminal) stop(StopReason::MaxExpansions);
  }
}

// The state hash of every child of a batch (of its key, when keyed), in one tight pass before any
// insert (independent hash chains overlap in the CPU), prefetching each one's slot in table (when
// given) so the inserts find it warm.
static void hash_children(const NodeStore& store, const ChildBatch& b, const StateTable* table, uint64_t* out) {
  if (b.keys) {
    for (size_t i = 0; i < b.num_children; ++i) out[i] = std::hash<std::string>{}((*b.keys)[i]);
    return;
  }
  size_t i = 0;
  const Token* tok = b.tokens;
  for (size_t j = 0; j < b.num_parents; ++j) {
    const uint64_t parent_hash = store[b.parents[j]].state_hash;
    for (int64_t c = 0; c < b.child_counts[j]; ++c, ++i) {
      const auto len = static_cast<size_t>(b.step_lengths[i]);
      out[i] = extend_hash(parent_hash, tok, len);
      if (table) table->prefetch(out[i]);
      tok += len;
    }
  }
}

Status Engine::expand(const ChildBatch& b, std::vector<NodeId>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  Timer t(&stats_.engine_seconds);
  Status s = validate_batch(b);
  if (!s.is_ok()) return s;
  out->assign(b.num_children, kNoNode);
  // The children's state hashes first, in one tight pass (independent chains overlap in the CPU),
  // prefetching their table slots; the inserts below find them warm. A parent's state hash never
  // changes (re-parenting keeps the state), so computing them early changes nothing.
  hashes_.resize(b.num_children);
  const uint64_t* hash = hashes_.data();
  hash_children(store_, b, config_.dedup ? &states_ : nullptr, hashes_.data());
  size_t i = 0;
  const Token* tok = b.tokens;
  for (size_t j = 0; j < b.num_parents; ++j) {
    NodeId parent = b.parents[j];
    Node& p = store_[parent];
    selected_.erase({p.f, parent});
    p.status = NodeStatus::Expanded;
    drop_pin(parent);
    ++stats_.expanded;
    for (int64_t c = 0; c < b.child_counts[j]; ++c, ++i) {
      auto len = static_cast<uint32_t>(b.step_lengths[i]);
      int64_t kv = b.kv_handles ? b.kv_handles[i] : -1;
      ++stats_.generated;
      if (done_locked() && stop_ != StopReason::Solutions) {
        ++stats_.dropped_budget;  // a node or token budget already ran out
        unpin_handle(kv);
      } else {
        (*out)[i] = insert_child(parent, hash[i], tok, len, b.rewards[i], b.q[i], b.terminal[i] != 0,
                                 b.samples ? b.samples[i] : 1, kv, b.keys ? &(*b.keys)[i] : nullptr);
      }
      tok += len;
    }
  }
  enforce_capacity();
  if (config_.selection == Selection::Beam && !done_locked() && frontier_.empty() && selected_.empty())
    advance_level();
  update_stop_after_expand();
  return Status::ok();
}

Status Engine::release(const NodeId* ids, size_t count) {
  std::lock_guard<std::mutex> lock(mu_);
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

int64_t Engine::shed_pins() {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t before = pinned_;
  for (size_t i = 0; i < store_.size() && pinned_ > 0; ++i) drop_pin(static_cast<NodeId>(i));
  return before;
}

// ---- readers ------------------------------------------------------------------------------

bool Engine::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_locked();
}

StopReason Engine::stop_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

std::vector<NodeId> Engine::solutions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return solutions_;
}

size_t Engine::num_nodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return store_.size();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = stats_;
  s.frontier = static_cast<int64_t>(frontier_.size() + next_.size());
  s.selected = static_cast<int64_t>(selected_.size());
  s.nodes = static_cast<int64_t>(store_.size());
  s.solutions = static_cast<int64_t>(solutions_.size());
  s.pinned = pinned_;
  return s;
}

Status Engine::check_id(NodeId id) const {
  if (store_.contains(id)) return Status::ok();
  return Status::invalid_argument("node id " + std::to_string(id) + " does not exist (this engine has " +
                                  std::to_string(store_.size()) + " nodes)");
}

Status Engine::infos(const NodeId* ids, size_t count, std::vector<NodeInfo>* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out->resize(count);
  for (size_t i = 0; i < count; ++i) {
    Status s = check_id(ids[i]);
    if (!s.is_ok()) return s;
    const Node& n = store_[ids[i]];
    NodeInfo& o = (*out)[i];
    o.id = ids[i];
    o.parent = n.parent;
    o.depth = n.depth;
    o.status = n.status;
    o.terminal = n.terminal;
    o.reward = n.reward;
    o.g = n.g;
    o.h = n.h;
    o.f = n.f;
    o.samples = n.samples;
    o.kv_handle = n.kv_handle;
    o.state_length = store_.state_length(ids[i]);
    o.key = n.has_key ? &store_.key(ids[i]) : nullptr;
  }
  return Status::ok();
}

Status Engine::info(NodeId id, NodeInfo* out) const {
  std::vector<NodeInfo> one;
  Status s = infos(&id, 1, &one);
  if (s.is_ok()) *out = one[0];
  return s;
}

Status Engine::step_tokens(NodeId id, std::vector<Token>* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  Status s = check_id(id);
  if (!s.is_ok()) return s;
  const Token* t = store_.step_tokens(id);
  out->assign(t, t + store_[id].token_count);
  return s;
}

Status Engine::path(NodeId id, std::vector<NodeId>* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  Status s = check_id(id);
  if (s.is_ok()) *out = store_.path(id);
  return s;
}

Status Engine::state_tokens(const NodeId* ids, size_t count, std::vector<Token>* tokens,
                            std::vector<int64_t>* offsets) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < count; ++i) {
    Status s = check_id(ids[i]);
    if (!s.is_ok()) return s;
  }
  tokens->clear();
  offsets->assign(1, 0);
  std::vector<NodeId> chain;
  for (size_t i = 0; i < count; ++i) {
    chain.clear();
    for (NodeId n = ids[i]; n != kNoNode; n = store_[n].parent) chain.push_back(n);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const Token* t = store_.step_tokens(*it);
      tokens->insert(tokens->end(), t, t + store_[*it].token_count);
    }
    offsets->push_back(static_cast<int64_t>(tokens->size()));
  }
  return Status::ok();
}

std::vector<NodeId> Engine::frontier_snapshot(size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<NodeId> out;
  for (const FrontierEntry& e : frontier_.ranked(limit)) out.push_back(e.id);
  if (out.size() < limit)
    for (const FrontierEntry& e : next_.ranked(limit - out.size())) out.push_back(e.id);
  return out;
}

std::vector<NodeId> Engine::pinned_nodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<NodeId> out;
  for (size_t i = 0; i < store_.size(); ++i)
    if (store_[static_cast<NodeId>(i)].kv_handle >= 0) out.push_back(static_cast<NodeId>(i));
  return out;
}

}  // namespace qstar
