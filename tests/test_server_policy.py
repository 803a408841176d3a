"""ServerPolicy against a scripted server on 127.0.0.1 (both wire formats): token ids in and out,
steps cut client-side, counts, seeds, usage, retries, routing and refusals."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from qstar_native import Searcher
from qstar_native.batch import Batch
from qstar_native.policy.sampling import node_seed
from qstar_native.policy.server import ServerError, ServerPolicy

from fake_server import CharTokenizer, FakeServer

APIS = ["openai", "llama.cpp"]
TOK = CharTokenizer()


def enc(text: str) -> list[int]:
    return TOK.encode(text)


def by_seed(prompt: list[int], seed: int, temperature: float) -> list[int]:
    """Greedy: "g\\n"; sampled: one of three lines chosen by the seed."""
    if temperature == 0:
        return enc("g\n")
    return enc(["x\n", "y\n", "zz\n"][seed % 3])


def policy(server: FakeServer, **kw) -> ServerPolicy:
    kw.setdefault("retries", 0)
    return ServerPolicy(server.url, TOK, **kw)


@pytest.mark.parametrize("api", APIS)
def test_samples_grouped_into_counts(api):
    with FakeServer(by_seed, api=api) as srv, policy(srv, num_candidates=8, temperature=0.7) as p:
        steps = p.propose([enc("q:")])
        assert p.servers[0].api == api
        assert steps.count.sum() == 8 and len(steps) == len({s.tobytes() for s in np.split(steps.tokens, np.cumsum(steps.lengths)[:-1])})
        assert set(steps.texts) <= {"x\n", "y\n", "zz\n"} and len(steps.texts) >= 2
        assert steps.finish == ["delimiter"] * len(steps)
        greedy = p.propose(Batch.of_states([enc("q:")], k=3, temperature=0.0))
        assert greedy.texts == ["g\n"] and greedy.count.tolist() == [3]


@pytest.mark.parametrize("api", APIS)
def test_delimiter_inside_a_token_ends_the_step_at_that_token(api):
    # token 128 is "a\nb": the step is [x, 128]; its text runs past the newline, as in-process decoding gives
    with FakeServer(lambda p, s, t: [ord("x"), 128, ord("y"), ord("\n")], api=api) as srv, policy(srv, num_candidates=1) as p:
        steps = p.propose([enc("q:")])
        assert steps.tokens.tolist() == [ord("x"), 128] and steps.texts == ["xa\nb"] and steps.finish == ["delimiter"]
        assert srv.requests[-1]["stop"] == ["\n"]


@pytest.mark.parametrize("api", APIS)
def test_eos_stop_strings_length_and_is_terminal(api):
    scripts = {"eos": enc("done") + [0], "stop": enc("the answer is 4. more\n"), "long": enc("abcdefghij" * 3 + "\n"), "code:\n": enc("return 1\n")}
    with FakeServer(lambda p, s, t: scripts.get(TOK.decode(p), [1]), api=api) as srv:
        with policy(srv, num_candidates=1, max_step_tokens=20, stop_strings=["answer is 4"], is_terminal=lambda line: line.startswith("return")) as p:
            steps = p.propose([enc(k) for k in scripts])
    assert steps.finish == ["eos", "stop", "length", "delimiter"]
    assert steps.terminal.tolist() == [True, True, False, True]
    assert steps.texts[0] == "done" and steps.lengths[0] == 5  # EOS is a token of the step, no part of its text
    assert steps.texts[1] == "the answer is 4" and steps.lengths[2] == 20


@pytest.mark.parametrize("api", APIS)
def test_n_is_split_at_the_server_cap_with_distinct_seeds(api):
    with FakeServer(by_seed, api=api, max_n=2, slots=2) as srv, policy(srv, num_candidates=5, temperature=1.0, max_n=2 if api == "openai" else None) as p:
        steps = p.propose([enc("q:")])
        asked = [r.get("n", r.get("n_cmpl")) for r in srv.requests[1:]]  # [0] is the start-up probe
        assert sorted(asked) == [1, 2, 2] and steps.count.sum() == 5
        assert len({r["seed"] for r in srv.requests[1:]}) == 3


@pytest.mark.parametrize("api", APIS)
def test_greedy_first_sends_one_greedy_sample(api):
    with FakeServer(by_seed, api=api) as srv, policy(srv, num_candidates=4, temperature=0.9, greedy_first=True) as p:
        steps = p.propose([enc("q:")])
        assert "g\n" in steps.texts and steps.count.sum() == 4
        assert sorted(r["temperature"] for r in srv.requests[1:]) == [0.0, 0.9]


def test_node_seeds_depend_only_on_seed_and_state():
    states = [enc("q1:"), enc("q2:"), enc("q1:ab")]
    with FakeServer(by_seed) as srv, policy(srv, num_candidates=2, temperature=1.0, seed=7) as p:
        together = p.propose(states)
        sent = {tuple(r["prompt"]): r["seed"] for r in srv.requests[1:]}
        alone = [p.propose([s]) for s in reversed(states)][::-1]
    for s in states:
        assert sent[tuple(s)] == (node_seed(7, np.array(s)) + 1) % 2**31
    for i, a in enumerate(alone):
        assert [(x.tokens.tolist(), x.count) for x in together.of_node(i)] == [(x.tokens.tolist(), x.count) for x in a.of_node(0)]


@pytest.mark.parametrize("api", APIS)
def test_usage_per_node_from_the_answers(api):
    with FakeServer(by_seed, api=api) as srv, policy(srv, num_candidates=3, temperature=1.0) as p:
        parent = enc("question: 2+2?\n")
        first = p.propose([parent])
        assert first.generated[0] == int((first.count * first.lengths).sum())  # every sample was one whole line
        assert first.forwarded[0] == len(parent) + first.generated[0]  # nothing of it cached yet
        child = parent + TOK.encode(first.texts[0])
        second = p.propose([child])
        assert second.forwarded[0] == len(child) - len(parent) + second.generated[0]  # the parent's prompt was cached
        assert p.cache_hit_tokens == len(parent) and p.tokens_generated == first.generated[0] + second.generated[0]


@pytest.mark.parametrize("fault", ["drop", "503"])
def test_retries_count_tokens_once(fault):
    with FakeServer(by_seed) as srv, policy(srv, num_candidates=2, temperature=1.0, retries=2, backoff=0.01) as p:
        srv.faults = [fault]
        steps = p.propose([enc("q:")])
        assert p.transport.retried == 1
        assert srv.generated > int(steps.generated.sum()) == p.tokens_generated  # the lost answer's tokens are not counted
        assert steps.count.sum() == 2


def test_timeout_is_retried_then_reported():
    with FakeServer(by_seed, hang=2.0) as srv:
        with policy(srv, num_candidates=1, timeout=0.5, retries=1, backoff=0.01) as p:
            srv.faults = ["hang"]
            assert p.propose([enc("q:")]).count.sum() == 1
        with policy(srv, num_candidates=1, timeout=0.5, retries=0) as p:
            srv.faults = ["hang"]
            with pytest.raises(ServerError, match="no answer within 0.5 s"):
                p.propose([enc("q:")])
            assert p.propose([enc("q:")]).count.sum() == 1  # usable afterwards


def test_server_down_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerError, match=rf"http://127.0.0.1:{port}: cannot reach the server \(connection refused"):
        ServerPolicy(f"http://127.0.0.1:{port}", TOK, retries=1, backoff=0.01)


def test_text_only_servers_are_refused_at_start():
    with FakeServer(by_seed, token_prompts=False) as srv, pytest.raises(ServerError, match="refused a token-id prompt"):
        policy(srv)
    with FakeServer(by_seed, token_ids=False) as srv, pytest.raises(ServerError, match="returns no generated token ids"):
        policy(srv)
    with FakeServer(by_seed) as srv, pytest.raises(ServerError, match="did not answer as llama.cpp"):
        policy(srv, api="llama.cpp")


def test_each_problem_stays_on_one_server():
    lines = lambda p, s, t: enc("step\n") if p.count(ord("\n")) < 3 else [0]  # noqa: E731
    with FakeServer(lines) as a, FakeServer(lines, api="llama.cpp") as b:
        p = ServerPolicy([a.url, b.url], TOK, num_candidates=2, temperature=0.0, retries=0)
        roots = [enc(f"problem {i}:\n") for i in range(12)]
        results = Searcher(p.as_expand(), max_expansions=10).search_many(roots)
        assert all(r.best is not None and len(r.best.steps) == 3 for r in results)
        homes = {}
        for srv in (a, b):
            for r in srv.requests[1:]:
                root = bytes(r["prompt"]).split(b"\n")[0]
                homes.setdefault(root, set()).add(srv.url)
        assert len(homes) == 12 and all(len(v) == 1 for v in homes.values())
        assert {next(iter(v)) for v in homes.values()} == {a.url, b.url}
        again = ServerPolicy([a.url, b.url], TOK, retries=0)
        assert [again.server_of(np.array(r)) for r in roots] == [p.server_of(np.array(r)) for r in roots]
        p.close()
        again.close()


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="urls must be"):
        ServerPolicy([], TOK)
    with pytest.raises(ValueError, match="api="):
        ServerPolicy("http://127.0.0.1:1", TOK, api="grpc")
    with pytest.raises(ValueError, match="top_p"):
        ServerPolicy("http://127.0.0.1:1", TOK, top_p=0.0)
    with FakeServer(lambda p, s, t: enc("ok\n") if len(p) > 1 else [1]) as srv, policy(srv, num_candidates=1) as p:
        srv.script = lambda p, s, t: [999]
        with pytest.raises(ValueError, match="outside the tokenizer's 130 ids"):
            p.propose([enc("q:")])


def test_qstar_eval_with_a_server_loads_no_weights_and_marks_its_records(tmp_path, capsys, monkeypatch):
    from qstar_native.cli import main
    from qstar_native.pretrained import load_tokenizer
    from qstar_native.records import read_records

    tok = load_tokenizer()  # the embedded default policy's: the fake server "serves" that model
    answer = tok("#### 42", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    monkeypatch.setattr("qstar_native.pretrained.load_policy", lambda *a, **k: pytest.fail("the weights loaded"))
    with FakeServer(lambda p, s, t: answer) as srv:
        out = tmp_path / "run.jsonl"
        argv = ["eval", "--n", "3", "--qvm", "none", "--methods", "greedy,qstar:4", "--no-progress", "--server", srv.url, "--records", str(out)]
        assert main(argv) == 0
        header, records = read_records(out)
        assert header["served"] is True and len(records) == 6
        assert all(r.answer == "42" and r.tokens_generated == len(answer) for r in records if r.method == "greedy")
        assert main(["eval", "--n", "1", "--value-server", srv.url, "--no-progress"]) == 2
        assert "use it with --server" in capsys.readouterr().err
        assert main([*argv[:-2], "--calculator", "on"]) == 2
        assert "--calculator off" in capsys.readouterr().err


def test_embedding_qvm_scorer_applies_the_head_to_the_servers_hidden_states():
    import torch

    from qstar_native.value import QValueModel
    from qstar_native.value.remote import EmbeddingQVMScorer

    def hidden(ids):  # the "model's" last-token hidden state of a state
        return [float(len(ids)), float(sum(ids) % 97), float(ids[-1]), 1.0]

    qvm = QValueModel(hidden_size=4, head="linear", out_act="sigmoid", seed=0)
    with FakeServer(by_seed) as srv:
        srv.embed = hidden
        with policy(srv, num_candidates=4, temperature=1.0) as p:
            batch = Batch.of_states([enc("q1:"), enc("q2:zz")], k=4, temperature=1.0)
            steps = p.propose(batch)
            q = EmbeddingQVMScorer(qvm, srv.url, batch_size=3)(batch, steps)
        states = [np.concatenate([batch.state(int(j)), s.tokens]) for j in range(2) for s in steps.of_node(j)]
        expected = qvm.score_hidden(torch.tensor([hidden(s.tolist()) for s in states])).detach().double().numpy()
        np.testing.assert_allclose(q, expected, rtol=1e-6)
        assert all(r.get("embd_normalize") == -1 for r in srv.requests if "content" in r)  # raw hidden states, as the head was trained
        srv.embed = lambda ids: [1.0, 2.0]
        with pytest.raises(ServerError, match="the QVM reads width 4"):
            EmbeddingQVMScorer(qvm, srv.url)(batch, steps)


def test_a_head_only_qvm_over_a_server_loads_the_policy_weights_as_its_backbone(tmp_path):
    from qstar_native.cli import main
    from qstar_native.pretrained import load_tokenizer
    from qstar_native.records import read_records

    tok = load_tokenizer()
    answer = tok("#### 42", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with FakeServer(lambda p, s, t: answer) as srv:
        out = tmp_path / "run.jsonl"
        assert main(["eval", "--n", "2", "--methods", "best-of-n:2,qstar:4", "--no-progress", "--server", srv.url, "--records", str(out)]) == 0
        _, records = read_records(out)
        assert len(records) == 4 and all(r.answer == "42" for r in records)


def test_malformed_answers_and_ctrl_c_leave_the_policy_usable():
    import signal
    import threading

    with FakeServer(by_seed) as srv, policy(srv, num_candidates=2, temperature=1.0) as p:
        srv.complete = lambda body, real=srv.complete: (200, {"choices": [{"index": 0, "token_ids": ["x"]}] * 2, "usage": {}})
        with pytest.raises(ServerError, match="returns no generated token ids"):
            p.propose([enc("q:")])
        srv.complete = lambda body: (200, {"choices": []})
        with pytest.raises(ServerError, match="without 2 choices"):
            p.propose([enc("q:")])
        del srv.complete  # the real one again
        srv.hang, srv.faults = 5.0, ["hang"]
        timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            p.propose([enc("q:")])
        assert p.propose([enc("q:")]).count.sum() == 2


def test_qstar_solve_with_a_server(capsys, monkeypatch):
    from qstar_native.cli import main
    from qstar_native.pretrained import load_tokenizer

    tok = load_tokenizer()
    answer = tok("#### 42", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    monkeypatch.setattr("qstar_native.pretrained.load_policy", lambda *a, **k: pytest.fail("the weights loaded"))
    with FakeServer(lambda p, s, t: answer) as srv:
        assert main(["solve", "What is 6 times 7?", "--qvm", "none", "--calculator", "off", "--server", srv.url]) == 0
    assert "42" in capsys.readouterr().out
