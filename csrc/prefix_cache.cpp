#include "prefix_cache.hpp"

#include <algorithm>
#include <functional>
#include <string>

namespace qstar {

namespace {

constexpr int32_t kRoot = 0;
constexpr int64_t kMaxBlockSize = int64_t{1} << 20;

std::string str(int64_t v) { return std::to_string(v); }

Status broken(const std::string& what) { return Status::invalid_state("prefix cache invariant violated: " + what); }

}  // namespace

Status PrefixCache::validate(int64_t num_blocks, int64_t block_size) {
  if (block_size < 1 || block_size > kMaxBlockSize)
    return Status::invalid_argument("block_size must be in [1, 2**20] tokens, got " + str(block_size));
  if (num_blocks < 1 || num_blocks > INT32_MAX)
    return Status::invalid_argument("num_blocks must be in [1, 2**31), got " + str(num_blocks) +
                                    "; it is the KV pool's capacity in tokens divided by block_size");
  return Status::ok();
}

PrefixCache::PrefixCache(int64_t num_blocks, int64_t block_size)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      state_(static_cast<size_t>(num_blocks), BlockState::Free),
      owner_(static_cast<size_t>(num_blocks), -1),
      free_(static_cast<size_t>(num_blocks)) {
  for (int64_t b = 0; b < num_blocks; ++b) free_[b] = static_cast<int32_t>(b);  // ascending: a min-heap
  nodes_.emplace_back();
  counters_.num_blocks = num_blocks;
  counters_.block_size = block_size;
}

// ---- helpers --------------------------------------------------------------------------------

Status PrefixCache::check_tokens(const Token* tokens, size_t count) const {
  for (size_t i = 0; i < count; ++i)
    if (tokens[i] < 0)
      return Status::invalid_argument("tokens[" + str(static_cast<int64_t>(i)) + "] = " + str(tokens[i]) +
                                      "; token ids must be non-negative");
  return Status::ok();
}

uint64_t PrefixCache::hash_block(const Token* block) const {
  uint64_t h = 0x243f6a8885a308d3ULL;
  for (int64_t i = 0; i < block_size_; ++i) {  // splitmix64 rounds, chained token by token
    h ^= 0x9e3779b97f4a7c15ULL + static_cast<uint32_t>(block[i]);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    h ^= h >> 31;
  }
  return h;
}

int32_t PrefixCache::find_child(int32_t node, const Token* block) const {
  auto range = nodes_[node].children.equal_range(hash_block(block));
  for (auto it = range.first; it != range.second; ++it)
    if (std::equal(block, block + block_size_, nodes_[it->second].tokens.begin())) return it->second;
  return -1;
}

size_t PrefixCache::common_blocks(int32_t node, const Token* tokens, size_t max_blocks) const {
  const RadixNode& n = nodes_[node];
  size_t k = 0, limit = std::min(max_blocks, n.blocks.size());
  auto bs = static_cast<size_t>(block_size_);
  while (k < limit && std::equal(tokens + k * bs, tokens + (k + 1) * bs, n.tokens.begin() + k * bs)) ++k;
  return k;
}

// Read-only walk: the number of leading blocks of tokens that are cached, and their block ids.
size_t PrefixCache::cached_path(const Token* tokens, size_t num_blocks, std::vector<int32_t>* blocks) const {
  int32_t node = kRoot;
  size_t i = 0;
  auto bs = static_cast<size_t>(block_size_);
  while (i < num_blocks) {
    int32_t c = find_child(node, tokens + i * bs);
    if (c < 0) break;
    size_t k = common_blocks(c, tokens + i * bs, num_blocks - i);
    blocks->insert(blocks->end(), nodes_[c].blocks.begin(), nodes_[c].blocks.begin() + k);
    i += k;
    if (k < nodes_[c].blocks.size()) break;
    node = c;
  }
  return i;
}

// The node whose root path is exactly the longest cached prefix of tokens, splitting a node
// where that prefix ends inside it.
int32_t PrefixCache::descend(const Token* tokens, size_t num_blocks) {
  int32_t node = kRoot;
  size_t i = 0;
  auto bs = static_cast<size_t>(block_size_);
  while (i < num_blocks) {
    int32_t c = find_child(node, tokens + i * bs);
    if (c < 0) break;
    size_t k = common_blocks(c, tokens + i * bs, num_blocks - i);
    if (k < nodes_[c].blocks.size()) return split(c, k);
    node = c;
    i += k;
  }
  return node;
}

int32_t PrefixCache::new_node() {
  if (dead_nodes_.empty()) {
    nodes_.emplace_back();
    return static_cast<int32_t>(nodes_.size() - 1);
  }
  int32_t id = dead_nodes_.back();
  dead_nodes_.pop_back();
  nodes_[id] = RadixNode();
  return id;
}

// Cuts node after keep_blocks blocks: a new node takes the head and the old one keeps the tail,
// so the old node's id (held by pin handles) still names the deeper end of its path.
int32_t PrefixCache::split(int32_t node, size_t keep_blocks) {
  int32_t head = new_node();  // before taking references: nodes_ may grow
  RadixNode& h = nodes_[head];
  RadixNode& t = nodes_[node];
  auto cut = static_cast<std::ptrdiff_t>(keep_blocks * static_cast<size_t>(block_size_));
  h.parent = t.parent;
  h.key = t.key;
  h.lock = t.lock;
  h.last_access = t.last_access;
  h.tokens.assign(t.tokens.begin(), t.tokens.begin() + cut);
  h.blocks.assign(t.blocks.begin(), t.blocks.begin() + static_cast<std::ptrdiff_t>(keep_blocks));
  t.tokens.erase(t.tokens.begin(), t.tokens.begin() + cut);
  t.blocks.erase(t.blocks.begin(), t.blocks.begin() + static_cast<std::ptrdiff_t>(keep_blocks));
  auto range = nodes_[h.parent].children.equal_range(h.key);
  for (auto it = range.first; it != range.second; ++it)
    if (it->second == node) it->second = head;
  t.parent = head;
  t.key = hash_block(t.tokens.data());
  h.children.emplace(t.key, node);
  for (int32_t b : h.blocks) owner_[b] = head;
  return head;  // the tail's eviction key (stamp, last block) is unchanged; the head is no leaf
}

void PrefixCache::touch(int32_t node) {
  ++clock_;
  for (int32_t x = node; x >= 0; x = nodes_[x].parent) {
    nodes_[x].last_access = clock_;
    sync_evictable(x);
  }
}

void PrefixCache::sync_evictable(int32_t node) {
  RadixNode& n = nodes_[node];
  bool want = node != kRoot && n.lock == 0 && n.children.empty() && !n.blocks.empty();
  EvictKey key{n.last_access, want ? n.blocks.back() : -1};
  if (n.evictable && (!want || key != n.evict_key)) {
    evictable_.erase(n.evict_key);
    n.evictable = false;
  }
  if (want && !n.evictable) {
    evictable_.insert(key);
    n.evict_key = key;
    n.evictable = true;
  }
}

void PrefixCache::lock(int32_t node) {
  for (int32_t x = node; x >= 0; x = nodes_[x].parent) {
    if (nodes_[x].lock++ == 0) pinned_blocks_ += static_cast<int64_t>(nodes_[x].blocks.size());
    sync_evictable(x);
  }
}

void PrefixCache::unlock(int32_t node) {
  for (int32_t x = node; x >= 0; x = nodes_[x].parent) {
    if (--nodes_[x].lock == 0) pinned_blocks_ -= static_cast<int64_t>(nodes_[x].blocks.size());
    sync_evictable(x);
  }
}

// Takes the last block of the least recently used unlocked leaf. Precondition: one exists.
void PrefixCache::evict_one() {
  int32_t block = evictable_.begin()->second;
  int32_t node = owner_[block];
  evictable_.erase(evictable_.begin());
  RadixNode& n = nodes_[node];
  n.evictable = false;
  n.blocks.pop_back();
  n.tokens.resize(n.tokens.size() - static_cast<size_t>(block_size_));
  state_[block] = BlockState::Free;
  owner_[block] = -1;
  push_free(block);
  --cached_blocks_;
  ++counters_.evictions;
  if (!n.blocks.empty()) {
    sync_evictable(node);
    return;
  }
  int32_t parent = n.parent;
  auto range = nodes_[parent].children.equal_range(n.key);
  for (auto it = range.first; it != range.second; ++it)
    if (it->second == node) {
      nodes_[parent].children.erase(it);
      break;
    }
  n = RadixNode();
  dead_nodes_.push_back(node);
  sync_evictable(parent);
}

void PrefixCache::push_free(int32_t block) {
  free_.push_back(block);
  std::push_heap(free_.begin(), free_.end(), std::greater<int32_t>());
}

int32_t PrefixCache::pop_free() {
  std::pop_heap(free_.begin(), free_.end(), std::greater<int32_t>());
  int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void PrefixCache::append_path_slots(int32_t node, std::vector<int64_t>* slots) const {
  std::vector<int32_t> path;
  for (int32_t x = node; x != kRoot; x = nodes_[x].parent) path.push_back(x);
  for (auto it = path.rbegin(); it != path.rend(); ++it)
    for (int32_t b : nodes_[*it].blocks)
      for (int64_t o = 0; o < block_size_; ++o) slots->push_back(int64_t{b} * block_size_ + o);
}

// ---- public calls ---------------------------------------------------------------------------

Status PrefixCache::match(const Token* tokens, size_t count, std::vector<int64_t>* slots) {
  std::lock_guard<std::mutex> guard(mu_);
  Status s = check_tokens(tokens, count);
  if (!s.is_ok()) return s;
  int32_t node = descend(tokens, count / static_cast<size_t>(block_size_));
  touch(node);
  slots->clear();
  append_path_slots(node, slots);
  counters_.hit_tokens += static_cast<int64_t>(slots->size());
  return s;
}

Status PrefixCache::allocate(int64_t num_tokens, std::vector<int64_t>* slots, bool* cache_full) {
  std::lock_guard<std::mutex> guard(mu_);
  *cache_full = false;
  if (num_tokens < 0) return Status::invalid_argument("num_tokens must be non-negative, got " + str(num_tokens));
  int64_t need = num_tokens / block_size_ + (num_tokens % block_size_ != 0);  // no overflow near INT64_MAX
  auto num_free = static_cast<int64_t>(free_.size());
  int64_t evictable = cached_blocks_ - pinned_blocks_;  // a lock covers every ancestor, so all unlocked blocks can go
  if (need > num_free + evictable) {
    *cache_full = true;
    std::string why = need > num_blocks_
        ? "more than the whole pool (num_blocks=" + str(num_blocks_) + ")"
        : "but only " + str(num_free) + " are free and " + str(evictable) + " evictable: " + str(pinned_blocks_) +
              " of the " + str(num_blocks_) + " blocks are pinned by live nodes and " + str(owned_blocks_) +
              " are held by the caller (allocated, not yet inserted or freed)";
    return Status::invalid_state("the prefix cache needs " + str(need) + " blocks for " + str(num_tokens) +
                                 " new tokens (block_size=" + str(block_size_) + ") " + why +
                                 "; raise kv_capacity, expand fewer nodes per batch, or unpin nodes that left "
                                 "the frontier");
  }
  while (static_cast<int64_t>(free_.size()) < need) evict_one();
  slots->clear();
  slots->reserve(static_cast<size_t>(num_tokens));
  for (int64_t i = 0; i < need; ++i) {
    int32_t b = pop_free();
    state_[b] = BlockState::Owned;
    ++owned_blocks_;
    for (int64_t o = 0; o < block_size_ && i * block_size_ + o < num_tokens; ++o)
      slots->push_back(int64_t{b} * block_size_ + o);
  }
  return Status::ok();
}

Status PrefixCache::insert(const Token* tokens, size_t count, const int64_t* slots, size_t num_slots) {
  std::lock_guard<std::mutex> guard(mu_);
  Status s = check_tokens(tokens, count);
  if (!s.is_ok()) return s;
  if (num_slots != count)
    return Status::invalid_argument("slots must have one entry per token: got " + str(static_cast<int64_t>(num_slots)) +
                                    " slots for " + str(static_cast<int64_t>(count)) + " tokens");
  auto bs = static_cast<size_t>(block_size_);
  size_t full = count / bs, total = (count + bs - 1) / bs;
  // Each block's slots must be one pool block's slots in order: its id, then offsets 0, 1, ...
  std::vector<int32_t> blocks(total);
  for (size_t i = 0; i < total; ++i) {
    int64_t first = slots[i * bs];
    for (size_t o = 0; o < bs && i * bs + o < count; ++o) {
      int64_t v = slots[i * bs + o];
      if (v < 0 || v >= num_blocks_ * block_size_ || v % block_size_ != static_cast<int64_t>(o) ||
          v != first + static_cast<int64_t>(o))
        return Status::invalid_argument(
            "slots[" + str(static_cast<int64_t>(i * bs + o)) + "] = " + str(v) + ": the slots of token block " +
            str(static_cast<int64_t>(i)) + " must be block_id * block_size + 0, 1, ... (block_size=" + str(block_size_) +
            ", block ids in [0, " + str(num_blocks_) + ")); pass the slots from match() then allocate() unchanged");
    }
    blocks[i] = static_cast<int32_t>(first / block_size_);
  }
  std::vector<int32_t> sorted = blocks;
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end())
    return Status::invalid_argument("slots use block " + str(*dup) + " for two different token blocks; each block " +
                                    "holds one run of block_size tokens");
  std::vector<int32_t> cached;
  size_t m = cached_path(tokens, full, &cached);
  for (size_t i = 0; i < total; ++i) {
    int32_t b = blocks[i];
    if (i < m && b == cached[i]) continue;
    if (state_[b] == BlockState::Owned) continue;  // newly computed (a duplicate of a cached one if i < m)
    std::string where = state_[b] == BlockState::Free ? "free" : "cached for other tokens";
    std::string want = i < m ? "the cache holds these tokens in block " + str(cached[i]) + "; pass match()'s slots"
                             : "new tokens need blocks from allocate()";
    return Status::invalid_argument("slots of token block " + str(static_cast<int64_t>(i)) + " point at block " +
                                    str(b) + ", which is " + where + " and not held by the caller: " + want);
  }
  // Valid: from here on nothing fails.
  int32_t node = descend(tokens, full);
  for (size_t i = 0; i < total; ++i) {
    int32_t b = blocks[i];
    if (i < m && b == cached[i]) continue;
    if (i < m || i >= full) {  // a duplicate of a cached block, or the uncached partial tail
      state_[b] = BlockState::Free;
      --owned_blocks_;
      push_free(b);
    }
  }
  if (m < full) {
    int32_t leaf = new_node();
    RadixNode& n = nodes_[leaf];
    n.parent = node;
    n.tokens.assign(tokens + m * bs, tokens + full * bs);
    n.blocks.assign(blocks.begin() + static_cast<std::ptrdiff_t>(m), blocks.begin() + static_cast<std::ptrdiff_t>(full));
    n.key = hash_block(n.tokens.data());
    for (int32_t b : n.blocks) {
      state_[b] = BlockState::Cached;
      owner_[b] = leaf;
    }
    nodes_[node].children.emplace(n.key, leaf);
    owned_blocks_ -= static_cast<int64_t>(full - m);
    cached_blocks_ += static_cast<int64_t>(full - m);
    counters_.computed_tokens += static_cast<int64_t>((full - m) * bs);
    node = leaf;
  }
  touch(node);  // also takes the old parent of a new leaf out of the evictable set
  return Status::ok();
}

Status PrefixCache::free(const int64_t* slots, size_t count) {
  std::lock_guard<std::mutex> guard(mu_);
  std::vector<int32_t> blocks;
  for (size_t i = 0; i < count; ++i) {
    int64_t v = slots[i];
    if (v < 0 || v >= num_blocks_ * block_size_)
      return Status::invalid_argument("slots[" + str(static_cast<int64_t>(i)) + "] = " + str(v) + " is outside the pool [0, " +
                                      str(num_blocks_ * block_size_) + ")");
    auto b = static_cast<int32_t>(v / block_size_);
    if (state_[b] != BlockState::Owned)
      return Status::invalid_argument(
          "slots[" + str(static_cast<int64_t>(i)) + "] = " + str(v) + " is in block " + str(b) + ", which is " +
          (state_[b] == BlockState::Free ? "already free" : "cached") +
          "; free() takes only slots from allocate() that were not passed to insert()");
    blocks.push_back(b);
  }
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  for (int32_t b : blocks) {
    state_[b] = BlockState::Free;
    --owned_blocks_;
    push_free(b);
  }
  return Status::ok();
}

Status PrefixCache::pin(const Token* tokens, size_t count, int64_t* handle) {
  std::lock_guard<std::mutex> guard(mu_);
  Status s = check_tokens(tokens, count);
  if (!s.is_ok()) return s;
  int32_t node = descend(tokens, count / static_cast<size_t>(block_size_));
  touch(node);
  lock(node);
  *handle = next_handle_++;
  pins_.emplace(*handle, node);
  return s;
}

Status PrefixCache::unpin(int64_t handle) {
  std::lock_guard<std::mutex> guard(mu_);
  auto it = pins_.find(handle);
  if (it == pins_.end())
    return Status::invalid_argument("unknown pin handle " + str(handle) +
                                    ": it was never returned by pin() or was already unpinned");
  int32_t node = it->second;
  pins_.erase(it);
  unlock(node);
  return Status::ok();
}

bool PrefixCache::has_pin(int64_t handle) const {
  std::lock_guard<std::mutex> guard(mu_);
  return pins_.count(handle) > 0;
}

int64_t PrefixCache::num_pins() const {
  std::lock_guard<std::mutex> guard(mu_);
  return static_cast<int64_t>(pins_.size());
}

int64_t PrefixCache::num_blocks() const {
  std::lock_guard<std::mutex> guard(mu_);
  return num_blocks_;
}

Status PrefixCache::grow(int64_t new_num_blocks) {
  std::lock_guard<std::mutex> guard(mu_);
  if (new_num_blocks < num_blocks_ || new_num_blocks > INT32_MAX)
    return Status::invalid_argument("grow() takes a block count in [" + str(num_blocks_) + ", 2**31), got " +
                                    str(new_num_blocks) + "; a cache never shrinks");
  state_.resize(static_cast<size_t>(new_num_blocks), BlockState::Free);
  owner_.resize(static_cast<size_t>(new_num_blocks), -1);
  for (int64_t b = num_blocks_; b < new_num_blocks; ++b) push_free(static_cast<int32_t>(b));
  num_blocks_ = new_num_blocks;
  counters_.num_blocks = new_num_blocks;
  return Status::ok();
}

Status PrefixCache::clear() {
  std::lock_guard<std::mutex> guard(mu_);
  if (!pins_.empty() || owned_blocks_ > 0)
    return Status::invalid_state("cannot clear the prefix cache: " + str(static_cast<int64_t>(pins_.size())) +
                                 " pins and " + str(owned_blocks_) + " caller-owned blocks are live; finish or drop "
                                 "the searches using it first");
  std::fill(state_.begin(), state_.end(), BlockState::Free);
  std::fill(owner_.begin(), owner_.end(), -1);
  free_.resize(static_cast<size_t>(num_blocks_));
  for (int64_t b = 0; b < num_blocks_; ++b) free_[static_cast<size_t>(b)] = static_cast<int32_t>(b);
  nodes_.assign(1, RadixNode());
  dead_nodes_.clear();
  evictable_.clear();
  cached_blocks_ = pinned_blocks_ = 0;
  clock_ = 0;
  counters_ = PrefixCacheStats();
  counters_.num_blocks = num_blocks_;
  counters_.block_size = block_size_;
  return Status::ok();
}

Status PrefixCache::pin_blocks(int64_t handle, std::vector<int32_t>* blocks) const {
  std::lock_guard<std::mutex> guard(mu_);
  auto it = pins_.find(handle);
  if (it == pins_.end()) return Status::invalid_argument("unknown pin handle " + str(handle));
  std::vector<int32_t> path;
  for (int32_t x = it->second; x != kRoot; x = nodes_[x].parent) path.push_back(x);
  blocks->clear();
  for (auto p = path.rbegin(); p != path.rend(); ++p) blocks->insert(blocks->end(), nodes_[*p].blocks.begin(), nodes_[*p].blocks.end());
  return Status::ok();
}

std::vector<int32_t> PrefixCache::pinned_block_ids() const {
  std::lock_guard<std::mutex> guard(mu_);
  std::vector<int32_t> out;
  for (const RadixNode& n : nodes_)
    if (n.lock > 0) out.insert(out.end(), n.blocks.begin(), n.blocks.end());
  std::sort(out.begin(), out.end());
  return out;
}

PrefixCacheStats PrefixCache::stats() const {
  std::lock_guard<std::mutex> guard(mu_);
  PrefixCacheStats s = counters_;
  s.free_blocks = static_cast<int64_t>(free_.size());
  s.blocks_in_use = num_blocks_ - s.free_blocks;
  s.pinned_blocks = pinned_blocks_;
  return s;
}

// ---- invariants -----------------------------------------------------------------------------

Status PrefixCache::check_invariants() const {
  std::lock_guard<std::mutex> guard(mu_);
  // Blocks: every block is exactly one of free / cached / owned, and the counters agree.
  int64_t counts[3] = {0, 0, 0};
  for (BlockState st : state_) ++counts[static_cast<int>(st)];
  if (counts[1] != cached_blocks_ || counts[2] != owned_blocks_)
    return broken("cached/owned block counters " + str(cached_blocks_) + "/" + str(owned_blocks_) +
                  " disagree with block states " + str(counts[1]) + "/" + str(counts[2]));
  if (counts[0] != static_cast<int64_t>(free_.size()))
    return broken(str(counts[0]) + " blocks are marked free but the free list holds " + str(free_.size()));
  if (!std::is_heap(free_.begin(), free_.end(), std::greater<int32_t>())) return broken("free list is not a min-heap");
  for (int32_t b : free_)
    if (state_[b] != BlockState::Free) return broken("block " + str(b) + " is on the free list but not free");

  // Tree: reachable nodes, block ownership, keys, stamps; expected lock counts from the pin table.
  std::vector<int64_t> expected_lock(nodes_.size(), 0);
  for (const auto& [handle, node] : pins_) {
    if (node < 0 || node >= static_cast<int32_t>(nodes_.size())) return broken("pin " + str(handle) + " names no node");
    for (int32_t x = node; x >= 0; x = nodes_[x].parent) ++expected_lock[x];
  }
  std::vector<int32_t> order{kRoot};
  int64_t tree_blocks = 0, pinned = 0, leaves = 0;
  auto bs = static_cast<size_t>(block_size_);
  for (size_t i = 0; i < order.size(); ++i) {
    int32_t x = order[i];
    const RadixNode& n = nodes_[x];
    std::string id = "node " + str(x);
    if (n.lock < 0) return broken(id + " has a negative lock count " + str(n.lock));
    if (n.lock != expected_lock[x])
      return broken(id + " has lock count " + str(n.lock) + " but its pins need " + str(expected_lock[x]));
    if (n.tokens.size() != n.blocks.size() * bs) return broken(id + " holds a partial block");
    if (x != kRoot && n.blocks.empty()) return broken(id + " holds no block");
    if (x != kRoot && n.last_access > nodes_[n.parent].last_access) return broken(id + " is newer than its parent");
    if (x != kRoot && n.key != hash_block(n.tokens.data())) return broken(id + " has a stale key");
    for (int32_t b : n.blocks)
      if (state_[b] != BlockState::Cached || owner_[b] != x)
        return broken("block " + str(b) + " is in " + id + " but not marked cached by it");
    tree_blocks += static_cast<int64_t>(n.blocks.size());
    if (n.lock > 0) pinned += static_cast<int64_t>(n.blocks.size());
    bool want = x != kRoot && n.lock == 0 && n.children.empty();
    EvictKey key{n.last_access, n.blocks.empty() ? -1 : n.blocks.back()};
    if (n.evictable != want || (want && (n.evict_key != key || !evictable_.count(key))))
      return broken(id + " is " + (n.evictable ? "" : "not ") + "marked evictable, wrongly");
    leaves += want;
    for (const auto& [k, c] : n.children) {
      if (nodes_[c].parent != x || nodes_[c].key != k) return broken("node " + str(c) + " is misfiled under " + id);
      if (find_child(x, nodes_[c].tokens.data()) != c) return broken(id + " has two children with one first block");
      order.push_back(c);
    }
  }
  if (tree_blocks != cached_blocks_)
    return broken("the tree holds " + str(tree_blocks) + " blocks but " + str(cached_blocks_) + " are marked cached");
  if (order.size() != nodes_.size() - dead_nodes_.size()) return broken("some live nodes are unreachable");
  std::vector<bool> reached(nodes_.size(), false);
  for (int32_t x : order) reached[x] = true;
  for (const auto& [handle, node] : pins_)
    if (!reached[node]) return broken("pin " + str(handle) + " names a node no longer in the tree");
  if (pinned != pinned_blocks_) return broken("pinned_blocks is " + str(pinned_blocks_) + ", the tree pins " + str(pinned));
  if (leaves != static_cast<int64_t>(evictable_.size())) return broken("the evictable set holds stale entries");
  return Status::ok();
}

}  // namespace qstar
