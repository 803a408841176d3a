// The engine alone, no Python: bench_engine.py's tree shape driven from C++, for instruction
// counts (callgrind, load-independent) and a clock without interpreter noise.
//
// Tree: a 160-token root; every expansion gets 8 children of 24 tokens from a pool of 4096 blocks
// (block e % 4096 for expansion e), rewards in (-1, 0], q = depth + 1 + u, terminals at depth 12;
// select(4), min aggregation, de-duplication on, max_nodes as the budget. Children are built
// outside the engine calls and not timed. Optionally, between engine calls, a buffer of
// THRASH_KB is walked to evict the caches the way the interpreter's work does in the real loop.
//
//   g++ -O3 -DNDEBUG -std=c++17 -Icsrc bench/bench_engine_core.cpp csrc/search.cpp
//       csrc/prefix_cache.cpp -o /tmp/bench_engine_core -lpthread
//   /tmp/bench_engine_core [NODES=50000] [REPEATS=5] [THRASH_KB=0]
//   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out /tmp/bench_engine_core 50000 1
//   callgrind_annotate --inclusive=yes /tmp/cg.out | grep 'qstar::Engine::'
// (the engine's instructions: the inclusive counts of Engine::add_root, select, expand and
// ~Engine; --toggle-collect is no use here, nested engine calls would toggle it off).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "search.hpp"

using namespace qstar;

namespace {

uint64_t next_random(uint64_t* state) {
  *state += 0x9e3779b97f4a7c15ULL;
  return mix64(*state);
}

double unit(uint64_t* state) { return static_cast<double>(next_random(state) >> 11) / 9007199254740992.0; }

}  // namespace

int main(int argc, char** argv) {
  const int64_t max_nodes = argc > 1 ? std::atoll(argv[1]) : 50000;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  const size_t thrash_bytes = argc > 3 ? static_cast<size_t>(std::atoll(argv[3])) * 1024 : 0;
  const int width = 8, step = 24, prompt = 160, terminal_depth = 12, k = 4, pool = 4096;

  uint64_t seed = 12345;
  std::vector<Token> pool_tokens(static_cast<size_t>(pool) * width * step), root(prompt);
  std::vector<double> pool_rewards(static_cast<size_t>(pool) * width), pool_q(static_cast<size_t>(pool) * width);
  for (Token& t : pool_tokens) t = static_cast<Token>(next_random(&seed) % 32000);
  for (double& r : pool_rewards) r = -unit(&seed);
  for (double& u : pool_q) u = unit(&seed);
  for (Token& t : root) t = static_cast<Token>(next_random(&seed) % 32000);
  std::vector<uint64_t> junk(thrash_bytes / 8 + 1);
  uint64_t sink = 0;
  auto thrash = [&] {
    for (size_t z = 0; z < junk.size(); z += 8) sink += (junk[z] += z);
  };

  std::vector<double> us_per_expansion, loop_us;
  EngineStats last;
  size_t solutions = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    EngineConfig config;
    config.num_solutions = 1000000000;
    config.max_nodes = max_nodes;
    Engine engine(config, nullptr);
    NodeId root_id = kNoNode;
    engine.add_root(root.data(), root.size(), 0.0, nullptr, &root_id);
    std::vector<int32_t> depth_of(static_cast<size_t>(max_nodes) + 1, 0);
    std::vector<int64_t> counts, lengths;
    std::vector<double> rewards, q;
    std::vector<uint8_t> terminal;
    std::vector<Token> tokens;
    std::vector<NodeId> landed;
    int64_t e = 0;
    double loop = 0.0;
    while (!engine.done()) {
      thrash();
      auto t0 = std::chrono::steady_clock::now();
      std::vector<NodeId> ids = engine.select(k);
      loop += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (ids.empty()) continue;
      const size_t n = ids.size();
      counts.assign(n, width);
      lengths.assign(n * width, step);
      rewards.clear(), q.clear(), terminal.clear(), tokens.clear();
      for (size_t j = 0; j < n; ++j, ++e) {
        const size_t b = static_cast<size_t>(e % pool);
        const int d = depth_of[static_cast<size_t>(ids[j])];
        tokens.insert(tokens.end(), pool_tokens.begin() + static_cast<std::ptrdiff_t>(b * width * step),
                      pool_tokens.begin() + static_cast<std::ptrdiff_t>((b + 1) * width * step));
        for (int i = 0; i < width; ++i) {
          rewards.push_back(pool_rewards[b * width + i]);
          q.push_back(d + 1.0 + pool_q[b * width + i]);
          terminal.push_back(d + 1 >= terminal_depth);
        }
      }
      ChildBatch batch;
      batch.parents = ids.data();
      batch.num_parents = n;
      batch.child_counts = counts.data();
      batch.tokens = tokens.data();
      batch.num_tokens = tokens.size();
      batch.step_lengths = lengths.data();
      batch.rewards = rewards.data();
      batch.q = q.data();
      batch.terminal = terminal.data();
      batch.num_children = n * width;
      thrash();
      t0 = std::chrono::steady_clock::now();
      Status s = engine.expand(batch, &landed);
      loop += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!s.is_ok()) {
        std::fprintf(stderr, "expand: %s\n", s.message.c_str());
        return 1;
      }
      for (size_t j = 0, i = 0; j < n; ++j)
        for (int c = 0; c < width; ++c, ++i)
          if (landed[i] >= 0) depth_of[static_cast<size_t>(landed[i])] = depth_of[static_cast<size_t>(ids[j])] + 1;
    }
    last = engine.stats();
    solutions = engine.solutions().size();
    us_per_expansion.push_back(last.engine_seconds / static_cast<double>(last.expanded) * 1e6);
    loop_us.push_back(loop / static_cast<double>(last.expanded) * 1e6);
  }
  std::sort(us_per_expansion.begin(), us_per_expansion.end());
  std::sort(loop_us.begin(), loop_us.end());
  std::printf("nodes %lld, expansions %lld, solutions %zu; engine_seconds per expansion: median %.3f us, "
              "min %.3f us, max %.3f us (%d repeats; around the calls: median %.3f us)%s\n",
              static_cast<long long>(last.nodes), static_cast<long long>(last.expanded), solutions,
              us_per_expansion[us_per_expansion.size() / 2], us_per_expansion.front(), us_per_expansion.back(), repeats,
              loop_us[loop_us.size() / 2], sink == 1 ? " " : "");
  return 0;
}
