// Vocabulary types shared by the engine's headers: ids, statuses, stop reasons and the error type
// that hot paths return instead of throwing (the bindings turn it into a Python exception).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

namespace qstar {

using NodeId = int64_t;
using Token = int32_t;

inline constexpr NodeId kNoNode = -1;
inline constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();

enum class NodeStatus : uint8_t {
  Open,      // on the frontier, waiting to be selected
  Selected,  // handed out by select(), waiting for expand()
  Expanded,  // its children were taken back
  Solution,  // a terminal node accepted as a solution
  Pruned,    // dropped by a budget (depth or frontier capacity); kept in the store, never lost
};

enum class StopReason : uint8_t {
  Running,
  Solutions,      // num_solutions terminals were accepted
  Exhausted,      // nothing left to expand
  MaxExpansions,
  MaxNodes,
  MaxTokens,
};

enum class ErrorCode : uint8_t { Ok, InvalidArgument, InvalidState };

// The result of a fallible call. Cheap when Ok; the message names the argument and the fix.
struct Status {
  ErrorCode code = ErrorCode::Ok;
  std::string message;

  static Status ok() { return {}; }
  static Status invalid_argument(std::string m) { return {ErrorCode::InvalidArgument, std::move(m)}; }
  static Status invalid_state(std::string m) { return {ErrorCode::InvalidState, std::move(m)}; }
  bool is_ok() const { return code == ErrorCode::Ok; }
};

const char* to_string(NodeStatus s);
const char* to_string(StopReason r);

}  // namespace qstar
