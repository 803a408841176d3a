"""The Searcher: one callback call per batch, search_many batching, errors from callbacks."""

from __future__ import annotations

import threading
import traceback

import numpy as np
import pytest

from qstar_native import Engine, Searcher, Step, Steps


def counting_problem(target: int, calls: list[list[tuple[int, int]]]):
    """Reach `target` from the root's last token with steps +1/+2 costing 1 each."""

    def expand(nodes):
        calls.append([(n.problem, n.id) for n in nodes])
        out = []
        for n in nodes:
            total = int(n.tokens.sum())  # root value + every step so far
            out.append([
                Step([s], reward=-1.0, q=-abs(target - total - s) / 2, terminal=total + s == target)
                for s in (1, 2) if total + s <= target
            ])
        return out

    return expand


def test_callback_gets_whole_batches_and_result_is_recomputable():
    calls: list = []
    searcher = Searcher(counting_problem(9, calls), aggregate="sum", batch_size=4, num_solutions=3)
    result = searcher.search([0])
    assert result.stop_reason == "solutions" and len(result.solutions) == 3
    assert result.stats.callback_calls == len(calls) and max(len(c) for c in calls) > 1
    assert all(len(c) <= 4 for c in calls)
    fs = [s.f for s in result.solutions]
    assert fs == sorted(fs, reverse=True)
    for sol in result.solutions:
        assert sum(int(s[0]) for s in sol.steps) == 9
        assert sol.g == pytest.approx(sum(sol.rewards)) and sol.h == sol.hs[-1]
        assert sol.f == pytest.approx(sol.g + sol.h)
    assert result.best.g == -5.0  # 2+2+2+2+1


def test_search_many_batches_problems_into_the_same_calls():
    calls: list = []
    searcher = Searcher(counting_problem(6, calls), aggregate="sum", batch_size=2)
    many = searcher.search_many([[0], [1], [2]])
    assert {p for c in calls[:1] for p, _ in c} == {0, 1, 2}  # the first call serves all three
    for root, res in zip([0, 1, 2], many):
        single = Searcher(counting_problem(6, []), aggregate="sum", batch_size=2).search([root])
        assert [s.tolist() for s in res.best.steps] == [s.tolist() for s in single.best.steps]
        assert res.best.f == single.best.f


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc_type", [Boom, KeyboardInterrupt])
def test_callback_exceptions_propagate_with_type_and_traceback(exc_type):
    state = {"fail": True}

    def expand(nodes):
        if state["fail"]:
            raise exc_type("inside the callback")
        return [[Step([1], terminal=True)] for _ in nodes]

    searcher = Searcher(expand)
    with pytest.raises(exc_type, match="inside the callback") as info:
        searcher.search([0])
    assert any(frame.name == "expand" for frame in traceback.extract_tb(info.tb))
    state["fail"] = False
    assert searcher.search([0]).best.steps[0].tolist() == [1]  # usable again


def test_callback_returning_wrong_count_or_bad_children():
    with pytest.raises(ValueError, match="returned steps for 0 nodes for 1 nodes"):
        Searcher(lambda nodes: []).search([0])
    with pytest.raises(ValueError, match="returned None"):
        Searcher(lambda nodes: None).search([0])
    with pytest.raises(ValueError, match="problem 0: child 0 has a non-finite q"):
        Searcher(lambda nodes: [[Step([1], q=float("nan"))] for _ in nodes]).search([0])


def test_bad_searcher_arguments():
    with pytest.raises(TypeError, match="expand must be callable"):
        Searcher(42)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Searcher(lambda n: [], batch_size=0)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        Searcher(lambda n: [], aggregate="avg")


def test_budget_exhausted_returns_partial_result():
    searcher = Searcher(lambda nodes: [[Step([1], q=1.0), Step([2])] for _ in nodes], max_expansions=5)
    result = searcher.search([0])
    assert result.best is None and result.stop_reason == "max_expansions"
    assert result.stats.expanded == 5


def drive(seed: int, width: int, depth: int) -> tuple[list[int], float]:
    """A pure-engine search with precomputed children, so the threads spend their time in C++."""
    rng = np.random.default_rng(seed)
    eng = Engine(aggregate="sum", num_solutions=5)
    eng.add_root([0])
    while not eng.done:
        for n in eng.select(8):
            d = eng.node(int(n)).depth
            eng.expand_steps(np.array([n]), Steps(
                [width], rng.integers(0, 50_000, width * 3).astype(np.int32), np.full(width, 3),
                # q grows with depth so the search dives instead of sweeping the exponential tree
                terminal=np.full(width, d + 1 >= depth), reward=-rng.random(width), q=d + 1 + rng.random(width),
            ))
    return eng.solutions, eng.stats().nodes


def test_independent_engines_run_in_parallel_threads():
    expected = [drive(seed, 16, 40) for seed in range(4)]
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def work(seed):
        try:
            results[seed] = drive(seed, 16, 40)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [results[s] for s in range(4)] == expected


def test_one_engine_shared_by_four_threads_is_serialized_not_corrupted():
    """Four workers select and expand on one engine at once (the GIL is released in C++): every
    node is handed out once, expanded once, and the tree is the one a single worker builds."""
    def run(threads: int) -> tuple[int, int, list[list[int]]]:
        eng = Engine(aggregate="sum", num_solutions=None, max_nodes=20_000)
        eng.add_root([0])
        handed: list[int] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                while not eng.done:
                    for n in eng.select(2):
                        handed.append(int(n))
                        d = eng.node(int(n)).depth
                        eng.expand_steps(np.array([n]), Steps(
                            [3], np.array([10 * d + i for i in range(3)], np.int32), np.ones(3, np.int64),
                            terminal=np.full(3, d + 1 >= 6), reward=-np.ones(3), q=np.zeros(3)))
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                errors.append(e)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert not errors, errors
        s = eng.stats()
        assert len(handed) == len(set(handed)) == s.expanded
        assert s.selected == 0 and eng.done
        return s.nodes, s.expanded, sorted(eng.state_tokens(i).tolist() for i in eng.solutions)

    assert run(4) == run(1)
