// The best-first frontier: open nodes ordered by (f descending, node id ascending).
//
// Ties are broken by id so the pop order is a pure function of the inputs and tests can assert it
// exactly. Ids are unique, so the order is a strict total order and any structure that always
// yields its first entry pops in exactly the same sequence. This one is an indexed 4-ary heap: a
// flat array of entries (no allocation per entry, unlike a node-based ordered set) plus each id's
// slot in it (ids are dense node ids), which gives what a plain heap lacks and the engine needs:
// removal of an arbitrary entry (a duplicate state improving an open node) in O(log n). The worst
// entry (to prune when the frontier is over capacity) comes from a second indexed heap in the
// reverse order, kept only when the engine has a capacity to enforce (track_worst). Ordered
// iteration (inspection, ranking a finished beam level) sorts a copy, O(n log n); it is rare.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "types.hpp"

namespace qstar {

struct FrontierEntry {
  double f;
  NodeId id;
};

// True when a ranks before b.
inline bool ranks_before(const FrontierEntry& a, const FrontierEntry& b) {
  return a.f > b.f || (a.f == b.f && a.id < b.id);
}

struct RankOrder {
  bool operator()(const FrontierEntry& a, const FrontierEntry& b) const { return ranks_before(a, b); }
};

struct ReverseRankOrder {
  bool operator()(const FrontierEntry& a, const FrontierEntry& b) const { return ranks_before(b, a); }
};

// A 4-ary heap of entries with distinct ids; top() is the first entry under Before. pos_[id] is the
// entry's slot, or kAbsent.
template <class Before>
class IndexedHeap {
 public:
  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  const FrontierEntry& top() const { return heap_[0]; }
  const std::vector<FrontierEntry>& entries() const { return heap_; }  // heap order, not ranked

  // The slot of the entry with this id and this f, or kAbsent.
  std::size_t find(const FrontierEntry& e) const {
    if (e.id < 0 || static_cast<std::size_t>(e.id) >= pos_.size()) return kAbsent;
    uint32_t p = pos_[static_cast<std::size_t>(e.id)];
    return p != kAbsent && heap_[p].f == e.f ? p : kAbsent;
  }

  // Adds e; a node already here keeps its one entry (see Frontier::push).
  void push(FrontierEntry e) {
    auto id = static_cast<std::size_t>(e.id);
    if (id >= pos_.size()) pos_.resize(std::max(id + 1, 2 * pos_.size()), kAbsent);
    if (pos_[id] != kAbsent) return;
    heap_.emplace_back();  // filled by sift_up
    sift_up(heap_.size() - 1, e);
  }

  FrontierEntry pop_top() {
    FrontierEntry e = heap_[0];
    remove_at(0);
    return e;
  }

  void remove_at(std::size_t i) {
    pos_[static_cast<std::size_t>(heap_[i].id)] = kAbsent;
    FrontierEntry last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    if (i > 0 && before_(last, heap_[(i - 1) / kArity])) sift_up(i, last);
    else sift_down(i, last);
  }

  void clear() {
    for (const FrontierEntry& e : heap_) pos_[static_cast<std::size_t>(e.id)] = kAbsent;
    heap_.clear();
  }

  static constexpr std::size_t kAbsent = 0xFFFFFFFFu;

 private:
  static constexpr std::size_t kArity = 4;

  void place(std::size_t i, FrontierEntry e) {
    heap_[i].f = e.f;  // field by field: a 16-byte copy of an entry built from two 8-byte stores
    heap_[i].id = e.id;  // would stall on store forwarding
    pos_[static_cast<std::size_t>(e.id)] = static_cast<uint32_t>(i);
  }

  void sift_up(std::size_t i, FrontierEntry e) {
    while (i > 0) {
      std::size_t parent = (i - 1) / kArity;
      if (!before_(e, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, e);
  }

  void sift_down(std::size_t i, FrontierEntry e) {
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t first = i * kArity + 1;
      if (first >= n) break;
      std::size_t end = std::min(first + kArity, n), best = first;
      for (std::size_t c = first + 1; c < end; ++c)
        if (before_(heap_[c], heap_[best])) best = c;
      if (!before_(heap_[best], e)) break;
      place(i, heap_[best]);
      i = best;
    }
    place(i, e);
  }

  Before before_;
  std::vector<FrontierEntry> heap_;
  std::vector<uint32_t> pos_;
};

class Frontier {
 public:
  // track_worst: keep the reverse heap so pop_worst() is O(log n) (else it scans, O(n)).
  explicit Frontier(bool track_worst = false) : track_worst_(track_worst) {}

  // Adds e. Pushing an entry that is already here changes nothing, as in an ordered set (it happens
  // when release() is given the same id twice); the engine never pushes a node that is here with a
  // different f (it erases the old entry first).
  void push(FrontierEntry e) {
    best_.push(e);
    if (track_worst_) worst_.push(e);
  }
  // Removes exactly this entry (same id and f); false when it is not here.
  bool erase(FrontierEntry e) {
    std::size_t at = best_.find(e);
    if (at == Heap::kAbsent) return false;
    best_.remove_at(at);
    if (track_worst_) worst_.remove_at(worst_.find(e));
    return true;
  }
  bool empty() const { return best_.empty(); }
  std::size_t size() const { return best_.size(); }
  const FrontierEntry& best() const { return best_.top(); }
  FrontierEntry pop_best() {
    FrontierEntry e = best_.pop_top();
    if (track_worst_) worst_.remove_at(worst_.find(e));
    return e;
  }
  FrontierEntry pop_worst() {
    FrontierEntry e;
    if (track_worst_) {
      e = worst_.pop_top();
    } else {
      const std::vector<FrontierEntry>& all = best_.entries();
      e = *std::max_element(all.begin(), all.end(), RankOrder());
    }
    best_.remove_at(best_.find(e));
    return e;
  }
  // Up to limit entries, best first.
  std::vector<FrontierEntry> ranked(std::size_t limit) const {
    std::vector<FrontierEntry> out = best_.entries();
    if (limit < out.size()) {
      std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(limit), out.end(), RankOrder());
      out.resize(limit);
    } else {
      std::sort(out.begin(), out.end(), RankOrder());
    }
    return out;
  }
  void clear() {
    best_.clear();
    worst_.clear();
  }

 private:
  using Heap = IndexedHeap<RankOrder>;
  bool track_worst_;
  Heap best_;
  IndexedHeap<ReverseRankOrder> worst_;
};

}  // namespace qstar
