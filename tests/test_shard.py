"""Sharded evaluation: --shard I/N splits the problems by a stable hash of their ids, and
qstar merge joins the shards into the records of one unsharded run, refusing what does not fit."""

from __future__ import annotations

import json

import pytest

from qstar_native.cli import main
from qstar_native.records import merge_records, read_records, shard_of


def test_shards_cover_every_id_once_and_are_stable():
    ids = [f"{i:04d}-{j}" for i in range(50) for j in range(4)]
    for n in (1, 3, 8):
        parts = [[x for x in ids if shard_of(x, n) == i] for i in range(n)]
        assert sorted(sum(parts, [])) == sorted(ids)
    assert [shard_of(x, 8) for x in ids[:5]] == [shard_of(x, 8) for x in ids[:5]]
    assert len({shard_of(x, 8) for x in ids}) == 8


def run_eval(path, *extra):
    argv = ["eval", "--n", "6", "--methods", "greedy,qstar:4", "--k", "2", "--threads", "1", "--no-progress", "--records", str(path), *extra]
    assert main(argv) == 0


def key(r):
    return (r.method, r.question_id, r.completion, r.tokens_generated, r.tokens_forwarded, r.correct)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    run_eval(d / "full.jsonl")
    for i in range(3):
        run_eval(d / f"s{i}.jsonl", "--shard", f"{i}/3")
    return d


def test_merged_shards_equal_the_unsharded_run(runs, capsys):
    capsys.readouterr()
    out = runs / "merged.jsonl"
    assert main(["merge", *(str(runs / f"s{i}.jsonl") for i in range(3)), "--out", str(out)]) == 0
    assert "12 records from 3 shards" in capsys.readouterr().out
    _, full = read_records(runs / "full.jsonl")
    header, merged = read_records(out)
    assert sorted(map(key, merged)) == sorted(map(key, full)) and len(full) == 12
    assert header["shard"] == {"merged": [0, 1, 2], "count": 3}
    assert main(["report", str(out)]) == 0


def test_merge_refuses_duplicates_and_mixed_runs(runs, tmp_path, capsys):
    s0, s1 = str(runs / "s0.jsonl"), str(runs / "s1.jsonl")
    assert main(["merge", s0, s0, "--out", str(tmp_path / "a.jsonl")]) == 2
    assert "both shard 0/3" in capsys.readouterr().err
    assert main(["merge", s0, str(runs / "full.jsonl"), "--out", str(tmp_path / "b.jsonl")]) == 2
    assert "not written with --shard" in capsys.readouterr().err
    # a copy of shard 1 relabelled as shard 2 holds shard 1's records a second time
    lines = (runs / "s1.jsonl").read_text().splitlines()
    head = json.loads(lines[0])
    head["shard"]["index"] = 2
    fake = tmp_path / "fake.jsonl"
    fake.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="a problem belongs to one shard"):
        merge_records([s0, s1, str(fake)])
    head["shard"]["index"], head["k"] = 2, 3
    fake.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"other settings .*\(k\)"):
        merge_records([s0, s1, str(fake)])


def test_merge_reports_missing_records_and_shards(runs, tmp_path, capsys):
    lines = (runs / "s2.jsonl").read_text().splitlines()
    cut = tmp_path / "s2cut.jsonl"
    cut.write_text("\n".join(lines[:-1]) + "\n")  # its last record was lost
    lost = json.loads(lines[-1])
    capsys.readouterr()
    assert main(["merge", str(runs / "s0.jsonl"), str(runs / "s1.jsonl"), str(cut), "--out", str(tmp_path / "m.jsonl")]) == 1
    assert f"1 records missing: {lost['method']} on {lost['question_id']}" in capsys.readouterr().err
    _, _, missing = merge_records([str(runs / "s0.jsonl"), str(runs / "s1.jsonl")])
    assert ("*", "shard 2/3") in missing
    assert main(["merge", str(runs / "s0.jsonl"), "--out", str(tmp_path / "n.jsonl"), "--allow-missing"]) == 0


def test_bad_shard_is_refused(capsys):
    for bad, msg in (("3/3", "need 0 <= I < N"), ("a/b", "must look like I/N")):
        assert main(["eval", "--n", "2", "--shard", bad, "--no-progress"]) == 2
        assert msg in capsys.readouterr().err
