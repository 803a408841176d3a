// The best-first frontier: open nodes ordered by (f descending, node id ascending).
//
// Ties are broken by id so the pop order is a pure function of the inputs and tests can assert it
// exactly. An ordered set (not a binary heap) because the engine needs three things a heap lacks:
// the worst entry (to prune when the frontier is over capacity), removal of an arbitrary entry
// (when a duplicate state improves an open node), and ordered iteration for inspection.
#pragma once

#include <cstddef>
#include <set>

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

class Frontier {
 public:
  using Set = std::set<FrontierEntry, RankOrder>;

  void push(FrontierEntry e) { set_.insert(e); }
  bool erase(FrontierEntry e) { return set_.erase(e) > 0; }
  bool empty() const { return set_.empty(); }
  std::size_t size() const { return set_.size(); }
  const FrontierEntry& best() const { return *set_.begin(); }
  const FrontierEntry& worst() const { return *set_.rbegin(); }
  FrontierEntry pop_best() {
    FrontierEntry e = *set_.begin();
    set_.erase(set_.begin());
    return e;
  }
  FrontierEntry pop_worst() {
    auto it = std::prev(set_.end());
    FrontierEntry e = *it;
    set_.erase(it);
    return e;
  }
  Set::const_iterator begin() const { return set_.begin(); }
  Set::const_iterator end() const { return set_.end(); }

 private:
  Set set_;
};

}  // namespace qstar
