// The only file that includes pybind11: it translates Python arguments into the core's types,
// releases the GIL around core calls, and turns Status errors into Python exceptions.
// It holds no search logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "prefix_cache.hpp"
#include "search.hpp"

namespace py = pybind11;
using namespace qstar;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

void raise_if_error(const Status& s) {
  if (s.code == ErrorCode::InvalidArgument) throw py::value_error(s.message);
  if (s.code == ErrorCode::InvalidState) throw std::runtime_error(s.message);
}

int64_t limit(std::optional<int64_t> v) { return v ? *v : kUnlimited; }

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

Engine make_engine(double lam, const std::string& aggregate, int64_t num_solutions,
                   std::optional<int64_t> max_expansions, std::optional<int64_t> max_nodes,
                   std::optional<int64_t> max_depth, std::optional<int64_t> max_tokens,
                   std::optional<int64_t> frontier_capacity, std::optional<int64_t> vocab_size, bool dedup) {
  EngineConfig c;
  auto agg = parse_aggregate(aggregate);
  if (!agg)
    throw py::value_error("aggregate must be one of 'min', 'max', 'sum', 'mean', 'product', 'last', 'zero'; got '" +
                          aggregate + "'");
  c.lam = lam;
  c.aggregate = *agg;
  c.num_solutions = num_solutions;
  c.max_expansions = limit(max_expansions);
  c.max_nodes = limit(max_nodes);
  c.max_depth = limit(max_depth);
  c.max_tokens = limit(max_tokens);
  c.frontier_capacity = limit(frontier_capacity);
  c.vocab_size = vocab_size.value_or(0);
  c.dedup = dedup;
  raise_if_error(Engine::validate(c));
  return Engine(c);
}

py::dict stats_dict(const EngineStats& s) {
  py::dict d;
  d["expanded"] = s.expanded;
  d["generated"] = s.generated;
  d["merged"] = s.merged;
  d["reopened"] = s.reopened;
  d["pruned_depth"] = s.pruned_depth;
  d["pruned_capacity"] = s.pruned_capacity;
  d["dropped_budget"] = s.dropped_budget;
  d["tokens"] = s.tokens;
  d["frontier"] = s.frontier;
  d["selected"] = s.selected;
  d["nodes"] = s.nodes;
  d["solutions"] = s.solutions;
  d["engine_seconds"] = s.engine_seconds;
  return d;
}

NodeId checked_id(const Engine& e, NodeId id) {
  if (!e.nodes().contains(id))
    throw py::index_error("node id " + std::to_string(id) + " does not exist (this engine has " +
                          std::to_string(e.nodes().size()) + " nodes)");
  return id;
}

// Raised (as _core.CacheFullError, a MemoryError) when allocate() cannot make room.
struct CacheFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

py::dict cache_stats_dict(const PrefixCacheStats& s) {
  py::dict d;
  d["hit_tokens"] = s.hit_tokens;
  d["computed_tokens"] = s.computed_tokens;
  d["evictions"] = s.evictions;
  d["blocks_in_use"] = s.blocks_in_use;
  d["free_blocks"] = s.free_blocks;
  d["pinned_blocks"] = s.pinned_blocks;
  d["num_blocks"] = s.num_blocks;
  d["block_size"] = s.block_size;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled core of qstar_native: the A* engine. Use the typed wrappers in qstar_native.";

  py::class_<Engine>(m, "Engine")
      .def(py::init(&make_engine), py::arg("lam"), py::arg("aggregate"), py::arg("num_solutions"),
           py::arg("max_expansions"), py::arg("max_nodes"), py::arg("max_depth"), py::arg("max_tokens"),
           py::arg("frontier_capacity"), py::arg("vocab_size"), py::arg("dedup"))
      .def(
          "add_root",
          [](Engine& e, CArray<int32_t> tokens, double h, std::optional<std::string> key) {
            NodeId id = kNoNode;
            Status s;
            {
              py::gil_scoped_release nogil;
              s = e.add_root(tokens.data(), static_cast<size_t>(tokens.size()), h, key ? &*key : nullptr, &id);
            }
            raise_if_error(s);
            return id;
          },
          py::arg("tokens"), py::arg("h"), py::arg("key"))
      .def(
          "select",
          [](Engine& e, int64_t k) {
            if (k < 1) throw py::value_error("k must be at least 1, got " + std::to_string(k));
            std::vector<NodeId> ids;
            {
              py::gil_scoped_release nogil;
              ids = e.select(k);
            }
            return to_numpy(ids);
          },
          py::arg("k"))
      .def(
          "expand",
          [](Engine& e, CArray<int64_t> parents, CArray<int64_t> counts, CArray<int32_t> tokens,
             CArray<int64_t> lengths, CArray<double> rewards, CArray<double> q, CArray<uint8_t> terminal,
             std::optional<std::vector<std::string>> keys) {
            if (counts.size() != parents.size())
              throw py::value_error("child_counts must have one entry per parent");
            py::ssize_t n = lengths.size();
            if (rewards.size() != n || q.size() != n || terminal.size() != n)
              throw py::value_error("step_lengths, rewards, q and terminal must have one entry per child");
            ChildBatch b;
            b.parents = parents.data();
            b.num_parents = static_cast<size_t>(parents.size());
            b.child_counts = counts.data();
            b.tokens = tokens.data();
            b.num_tokens = static_cast<size_t>(tokens.size());
            b.step_lengths = lengths.data();
            b.rewards = rewards.data();
            b.q = q.data();
            b.terminal = terminal.data();
            b.num_children = static_cast<size_t>(n);
            b.keys = keys ? &*keys : nullptr;
            std::vector<NodeId> out;
            Status s;
            {
              py::gil_scoped_release nogil;
              s = e.expand(b, &out);
            }
            raise_if_error(s);
            return to_numpy(out);
          },
          py::arg("parents"), py::arg("child_counts"), py::arg("tokens"), py::arg("step_lengths"),
          py::arg("rewards"), py::arg("q"), py::arg("terminal"), py::arg("keys"))
      .def(
          "release",
          [](Engine& e, CArray<int64_t> ids) {
            Status s;
            {
              py::gil_scoped_release nogil;
              s = e.release(ids.data(), static_cast<size_t>(ids.size()));
            }
            raise_if_error(s);
          },
          py::arg("ids"))
      .def_property_readonly("done", &Engine::done)
      .def_property_readonly("stop_reason", [](const Engine& e) { return std::string(to_string(e.stop_reason())); })
      .def_property_readonly("solutions", [](const Engine& e) { return to_numpy(e.solutions()); })
      .def_property_readonly("num_nodes", [](const Engine& e) { return e.nodes().size(); })
      .def("stats", [](const Engine& e) { return stats_dict(e.stats()); })
      .def(
          "node",
          [](const Engine& e, NodeId id) {
            const Node& n = e.nodes()[checked_id(e, id)];
            py::dict d;
            d["id"] = id;
            d["parent"] = n.parent;
            d["depth"] = n.depth;
            d["status"] = to_string(n.status);
            d["terminal"] = n.terminal;
            d["reward"] = n.reward;
            d["g"] = n.g;
            d["h"] = n.h;
            d["f"] = n.f;
            d["key"] = n.has_key ? py::object(py::bytes(e.nodes().key(id))) : py::object(py::none());
            return d;
          },
          py::arg("id"))
      .def(
          "step_tokens",
          [](const Engine& e, NodeId id) {
            const Token* t = e.nodes().step_tokens(checked_id(e, id));
            return to_numpy(std::vector<Token>(t, t + e.nodes()[id].token_count));
          },
          py::arg("id"))
      .def(
          "state_tokens", [](const Engine& e, NodeId id) { return to_numpy(e.nodes().state_tokens(checked_id(e, id))); },
          py::arg("id"))
      .def(
          "path", [](const Engine& e, NodeId id) { return to_numpy(e.nodes().path(checked_id(e, id))); },
          py::arg("id"))
      .def(
          "frontier", [](const Engine& e, size_t limit) { return to_numpy(e.frontier_snapshot(limit)); },
          py::arg("limit"));

  py::register_exception<CacheFull>(m, "CacheFullError", PyExc_MemoryError);
  py::class_<PrefixCache>(m, "PrefixCache")
      .def(py::init([](int64_t num_blocks, int64_t block_size) {
             raise_if_error(PrefixCache::validate(num_blocks, block_size));
             return PrefixCache(num_blocks, block_size);
           }),
           py::arg("num_blocks"), py::arg("block_size"))
      .def_property_readonly("num_blocks", &PrefixCache::num_blocks)
      .def_property_readonly("block_size", &PrefixCache::block_size)
      .def(
          "match",
          [](PrefixCache& c, CArray<int32_t> tokens) {
            std::vector<int64_t> slots;
            Status s;
            {
              py::gil_scoped_release nogil;
              s = c.match(tokens.data(), static_cast<size_t>(tokens.size()), &slots);
            }
            raise_if_error(s);
            return to_numpy(slots);
          },
          py::arg("tokens"))
      .def(
          "allocate",
          [](PrefixCache& c, int64_t num_tokens) {
            std::vector<int64_t> slots;
            bool full = false;
            Status s;
            {
              py::gil_scoped_release nogil;
              s = c.allocate(num_tokens, &slots, &full);
            }
            if (full) throw CacheFull(s.message);
            raise_if_error(s);
            return to_numpy(slots);
          },
          py::arg("num_tokens"))
      .def(
          "insert",
          [](PrefixCache& c, CArray<int32_t> tokens, CArray<int64_t> slots) {
            Status s;
            {
              py::gil_scoped_release nogil;
              s = c.insert(tokens.data(), static_cast<size_t>(tokens.size()), slots.data(),
                           static_cast<size_t>(slots.size()));
            }
            raise_if_error(s);
          },
          py::arg("tokens"), py::arg("slots"))
      .def(
          "free",
          [](PrefixCache& c, CArray<int64_t> slots) {
            Status s;
            {
              py::gil_scoped_release nogil;
              s = c.free(slots.data(), static_cast<size_t>(slots.size()));
            }
            raise_if_error(s);
          },
          py::arg("slots"))
      .def(
          "pin",
          [](PrefixCache& c, CArray<int32_t> tokens) {
            int64_t handle = 0;
            Status s;
            {
              py::gil_scoped_release nogil;
              s = c.pin(tokens.data(), static_cast<size_t>(tokens.size()), &handle);
            }
            raise_if_error(s);
            return handle;
          },
          py::arg("tokens"))
      .def(
          "unpin",
          [](PrefixCache& c, int64_t handle) {
            Status s;
            {
              py::gil_scoped_release nogil;
              s = c.unpin(handle);
            }
            raise_if_error(s);
          },
          py::arg("handle"))
      .def("stats", [](const PrefixCache& c) { return cache_stats_dict(c.stats()); })
      .def("check_invariants", [](const PrefixCache& c) {
        Status s;
        {
          py::gil_scoped_release nogil;
          s = c.check_invariants();
        }
        raise_if_error(s);
      });
}
