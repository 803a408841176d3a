// g(s) = Agg(R(s_1) .. R(s_t)), kept incrementally: each node stores a running accumulator, and a
// child's accumulator is one O(1) step from its parent's. The root (no steps) has g = 0.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qstar {

enum class Aggregate : uint8_t { Min, Max, Sum, Mean, Product, Last, Zero };

inline std::optional<Aggregate> parse_aggregate(std::string_view name) {
  if (name == "min") return Aggregate::Min;
  if (name == "max") return Aggregate::Max;
  if (name == "sum") return Aggregate::Sum;
  if (name == "mean") return Aggregate::Mean;
  if (name == "product") return Aggregate::Product;
  if (name == "last") return Aggregate::Last;
  if (name == "zero") return Aggregate::Zero;
  return std::nullopt;
}

// Accumulator of a path one step longer than the parent's (parent_depth steps so far).
inline double extend_accumulator(Aggregate agg, double parent_acc, int32_t parent_depth, double reward) {
  if (agg == Aggregate::Zero) return 0.0;
  if (parent_depth == 0) return reward;
  switch (agg) {
    case Aggregate::Min: return std::min(parent_acc, reward);
    case Aggregate::Max: return std::max(parent_acc, reward);
    case Aggregate::Sum:
    case Aggregate::Mean: return parent_acc + reward;  // mean divides by depth on read
    case Aggregate::Product: return parent_acc * reward;
    case Aggregate::Last: return reward;
    case Aggregate::Zero: break;
  }
  return 0.0;
}

inline double aggregate_value(Aggregate agg, double acc, int32_t depth) {
  if (depth == 0) return 0.0;
  return agg == Aggregate::Mean ? acc / depth : acc;
}

}  // namespace qstar
