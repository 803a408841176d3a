// The only file that includes pybind11: it translates Python arguments into the core's types,
// releases the GIL around core calls, and turns Status errors into Python exceptions.
// It holds no search logic.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
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

// Runs f with the GIL released and raises its Status.
template <typename F>
void nogil(F&& f) {
  Status s;
  {
    py::gil_scoped_release release;
    s = f();
  }
  raise_if_error(s);
}

EngineConfig make_config(double lam, const std::string& aggregate, const std::string& selection,
                         std::optional<int64_t> beam_width, std::optional<int64_t> num_solutions,
                         std::optional<int64_t> max_expansions, std::optional<int64_t> max_nodes,
                         std::optional<int64_t> max_steps, std::optional<int64_t> max_tokens,
                         std::optional<int64_t> frontier_capacity, std::optional<int64_t> vocab_size, bool dedup) {
  EngineConfig c;
  auto agg = parse_aggregate(aggregate);
  if (!agg)
    throw py::value_error("aggregate must be one of 'min', 'max', 'sum', 'mean', 'product', 'last', 'zero'; got '" +
                          aggregate + "'");
  if (selection != "best_first" && selection != "beam")
    throw py::value_error("selection must be 'best_first' (A*) or 'beam' (level by level); got '" + selection + "'");
  c.lam = lam;
  c.aggregate = *agg;
  c.selection = selection == "beam" ? Selection::Beam : Selection::BestFirst;
  c.beam_width = limit(beam_width);
  c.num_solutions = limit(num_solutions);
  c.max_expansions = limit(max_expansions);
  c.max_nodes = limit(max_nodes);
  c.max_steps = limit(max_steps);
  c.max_tokens = limit(max_tokens);
  c.frontier_capacity = limit(frontier_capacity);
  c.vocab_size = vocab_size.value_or(0);
  c.dedup = dedup;
  raise_if_error(Engine::validate(c));
  return c;
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
  d["pinned"] = s.pinned;
  d["engine_seconds"] = s.engine_seconds;
  return d;
}

// Columns of several nodes: one numpy array per field, keys as a list (None when unkeyed).
py::dict info_columns(const std::vector<NodeInfo>& rows) {
  auto n = static_cast<py::ssize_t>(rows.size());
  CArray<int64_t> parent(n), samples(n), kv(n), length(n);
  CArray<int32_t> depth(n);
  CArray<uint8_t> status(n);
  CArray<bool> terminal(n);
  CArray<double> reward(n), g(n), h(n), f(n);
  py::list keys;
  for (py::ssize_t i = 0; i < n; ++i) {
    const NodeInfo& r = rows[static_cast<size_t>(i)];
    parent.mutable_data()[i] = r.parent;
    depth.mutable_data()[i] = r.depth;
    status.mutable_data()[i] = static_cast<uint8_t>(r.status);
    terminal.mutable_data()[i] = r.terminal;
    reward.mutable_data()[i] = r.reward;
    g.mutable_data()[i] = r.g;
    h.mutable_data()[i] = r.h;
    f.mutable_data()[i] = r.f;
    samples.mutable_data()[i] = r.samples;
    kv.mutable_data()[i] = r.kv_handle;
    length.mutable_data()[i] = static_cast<int64_t>(r.state_length);
    keys.append(r.key ? py::object(py::bytes(*r.key)) : py::object(py::none()));
  }
  py::dict d;
  d["parent"] = parent;
  d["depth"] = depth;
  d["status"] = status;
  d["terminal"] = terminal;
  d["reward"] = reward;
  d["g"] = g;
  d["h"] = h;
  d["f"] = f;
  d["samples"] = samples;
  d["kv_handle"] = kv;
  d["state_length"] = length;
  d["key"] = keys;
  return d;
}

// One node field as a numpy array (the columnar read of a batch: one field, no dict of columns).
template <typename T, typename F>
py::array_t<T> field(const std::vector<NodeInfo>& rows, F get) {
  py::array_t<T> out(static_cast<py::ssize_t>(rows.size()));
  T* p = out.mutable_data();
  for (size_t i = 0; i < rows.size(); ++i) p[i] = static_cast<T>(get(rows[i]));
  return out;
}

py::array info_column(const std::vector<NodeInfo>& rows, const std::string& name) {
  if (name == "depth") return field<int32_t>(rows, [](const NodeInfo& r) { return r.depth; });
  if (name == "parent") return field<int64_t>(rows, [](const NodeInfo& r) { return r.parent; });
  if (name == "samples") return field<int64_t>(rows, [](const NodeInfo& r) { return r.samples; });
  if (name == "kv_handle") return field<int64_t>(rows, [](const NodeInfo& r) { return r.kv_handle; });
  if (name == "state_length") return field<int64_t>(rows, [](const NodeInfo& r) { return r.state_length; });
  if (name == "status") return field<uint8_t>(rows, [](const NodeInfo& r) { return static_cast<uint8_t>(r.status); });
  if (name == "terminal") return field<bool>(rows, [](const NodeInfo& r) { return r.terminal; });
  if (name == "reward") return field<double>(rows, [](const NodeInfo& r) { return r.reward; });
  if (name == "g") return field<double>(rows, [](const NodeInfo& r) { return r.g; });
  if (name == "h") return field<double>(rows, [](const NodeInfo& r) { return r.h; });
  if (name == "f") return field<double>(rows, [](const NodeInfo& r) { return r.f; });
  throw py::key_error("no node field '" + name +
                      "'; pick one of depth, parent, samples, kv_handle, state_length, status, terminal, reward, g, h, f");
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

template <typename T>
const T* optional_data(const std::optional<CArray<T>>& a, py::ssize_t n, const char* name) {
  if (!a) return nullptr;
  if (a->size() != n) throw py::value_error(std::string(name) + " must have one entry per child");
  return a->data();
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Compiled core of qstar_native: the search engine and the KV prefix cache. Use the typed wrappers.";

  py::list statuses;
  for (auto s : {NodeStatus::Open, NodeStatus::Selected, NodeStatus::Expanded, NodeStatus::Solution, NodeStatus::Pruned})
    statuses.append(to_string(s));
  m.attr("NODE_STATUSES") = py::tuple(statuses);

  py::class_<EngineConfig>(m, "EngineConfig")
      .def(py::init(&make_config), py::arg("lam"), py::arg("aggregate"), py::arg("selection"), py::arg("beam_width"),
           py::arg("num_solutions"), py::arg("max_expansions"), py::arg("max_nodes"), py::arg("max_steps"),
           py::arg("max_tokens"), py::arg("frontier_capacity"), py::arg("vocab_size"), py::arg("dedup"));

  py::register_exception<CacheFull>(m, "CacheFullError", PyExc_MemoryError);
  py::class_<PrefixCache, std::shared_ptr<PrefixCache>>(m, "PrefixCache")
      .def(py::init([](int64_t num_blocks, int64_t block_size) {
             raise_if_error(PrefixCache::validate(num_blocks, block_size));
             return std::make_shared<PrefixCache>(num_blocks, block_size);
           }),
           py::arg("num_blocks"), py::arg("block_size"))
      .def_property_readonly("num_blocks", &PrefixCache::num_blocks)
      .def_property_readonly("block_size", &PrefixCache::block_size)
      .def(
          "match",
          [](PrefixCache& c, CArray<int32_t> tokens) {
            std::vector<int64_t> slots;
            nogil([&] { return c.match(tokens.data(), static_cast<size_t>(tokens.size()), &slots); });
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
            nogil([&] {
              return c.insert(tokens.data(), static_cast<size_t>(tokens.size()), slots.data(),
                              static_cast<size_t>(slots.size()));
            });
          },
          py::arg("tokens"), py::arg("slots"))
      .def(
          "free",
          [](PrefixCache& c, CArray<int64_t> slots) {
            nogil([&] { return c.free(slots.data(), static_cast<size_t>(slots.size())); });
          },
          py::arg("slots"))
      .def(
          "pin",
          [](PrefixCache& c, CArray<int32_t> tokens) {
            int64_t handle = 0;
            nogil([&] { return c.pin(tokens.data(), static_cast<size_t>(tokens.size()), &handle); });
            return handle;
          },
          py::arg("tokens"))
      .def(
          "unpin", [](PrefixCache& c, int64_t handle) { nogil([&] { return c.unpin(handle); }); },
          py::arg("handle"))
      .def("has_pin", &PrefixCache::has_pin, py::arg("handle"))
      .def_property_readonly("num_pins", &PrefixCache::num_pins)
      .def(
          "grow", [](PrefixCache& c, int64_t n) { nogil([&] { return c.grow(n); }); }, py::arg("num_blocks"))
      .def("clear", [](PrefixCache& c) { nogil([&] { return c.clear(); }); })
      .def(
          "pin_blocks",
          [](const PrefixCache& c, int64_t handle) {
            std::vector<int32_t> blocks;
            nogil([&] { return c.pin_blocks(handle, &blocks); });
            return to_numpy(blocks);
          },
          py::arg("handle"))
      .def("pinned_block_ids", [](const PrefixCache& c) { return to_numpy(c.pinned_block_ids()); })
      .def("stats", [](const PrefixCache& c) { return cache_stats_dict(c.stats()); })
      .def("check_invariants", [](const PrefixCache& c) { nogil([&] { return c.check_invariants(); }); });

  py::class_<Engine>(m, "Engine")
      .def(py::init([](const EngineConfig& config, std::shared_ptr<PrefixCache> cache) {
             return std::make_unique<Engine>(config, std::move(cache));
           }),
           py::arg("config"), py::arg("cache"))
      .def(
          "add_root",
          [](Engine& e, CArray<int32_t> tokens, double h, std::optional<std::string> key) {
            NodeId id = kNoNode;
            nogil([&] { return e.add_root(tokens.data(), static_cast<size_t>(tokens.size()), h, key ? &*key : nullptr, &id); });
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
          [](Engine& e, CArray<int64_t> parents, CArray<int64_t> counts, CArray<int32_t> tokens, CArray<int64_t> lengths,
             CArray<double> rewards, CArray<double> q, CArray<bool> terminal, std::optional<CArray<int64_t>> samples,
             std::optional<CArray<int64_t>> kv_handles, std::optional<std::vector<std::string>> keys) {
            if (counts.size() != parents.size()) throw py::value_error("child_counts must have one entry per parent");
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
            b.terminal = reinterpret_cast<const uint8_t*>(terminal.data());  // bool is one byte, 0 or 1
            b.num_children = static_cast<size_t>(n);
            b.samples = optional_data(samples, n, "samples");
            b.kv_handles = optional_data(kv_handles, n, "kv_handles");
            b.keys = keys ? &*keys : nullptr;
            std::vector<NodeId> out;
            nogil([&] { return e.expand(b, &out); });
            return to_numpy(out);
          },
          py::arg("parents"), py::arg("child_counts"), py::arg("tokens"), py::arg("step_lengths"), py::arg("rewards"),
          py::arg("q"), py::arg("terminal"), py::arg("samples"), py::arg("kv_handles"), py::arg("keys"))
      .def(
          "release", [](Engine& e, CArray<int64_t> ids) { nogil([&] { return e.release(ids.data(), static_cast<size_t>(ids.size())); }); },
          py::arg("ids"))
      .def("shed_pins", [](Engine& e) {
        py::gil_scoped_release nogil;
        return e.shed_pins();
      })
      .def_property_readonly("done", &Engine::done)
      .def_property_readonly("stop_reason", [](const Engine& e) { return std::string(to_string(e.stop_reason())); })
      .def_property_readonly("solutions", [](const Engine& e) { return to_numpy(e.solutions()); })
      .def_property_readonly("num_nodes", &Engine::num_nodes)
      .def("stats", [](const Engine& e) { return stats_dict(e.stats()); })
      .def(
          "infos",
          [](const Engine& e, CArray<int64_t> ids) {
            std::vector<NodeInfo> rows;
            nogil([&] { return e.infos(ids.data(), static_cast<size_t>(ids.size()), &rows); });
            return info_columns(rows);
          },
          py::arg("ids"))
      .def(
          "column",
          [](const Engine& e, CArray<int64_t> ids, const std::string& name) {
            std::vector<NodeInfo> rows;
            nogil([&] { return e.infos(ids.data(), static_cast<size_t>(ids.size()), &rows); });
            return info_column(rows, name);
          },
          py::arg("ids"), py::arg("name"))
      .def(
          "step_tokens",
          [](const Engine& e, NodeId id) {
            std::vector<Token> out;
            nogil([&] { return e.step_tokens(id, &out); });
            return to_numpy(out);
          },
          py::arg("id"))
      .def(
          "state_tokens",
          [](const Engine& e, CArray<int64_t> ids) {
            std::vector<Token> tokens;
            std::vector<int64_t> offsets;
            nogil([&] { return e.state_tokens(ids.data(), static_cast<size_t>(ids.size()), &tokens, &offsets); });
            return py::make_tuple(to_numpy(tokens), to_numpy(offsets));
          },
          py::arg("ids"))
      .def(
          "path",
          [](const Engine& e, NodeId id) {
            std::vector<NodeId> out;
            nogil([&] { return e.path(id, &out); });
            return to_numpy(out);
          },
          py::arg("id"))
      .def(
          "frontier", [](const Engine& e, size_t limit) { return to_numpy(e.frontier_snapshot(limit)); },
          py::arg("limit"))
      .def("pinned_nodes", [](const Engine& e) { return to_numpy(e.pinned_nodes()); });
}
