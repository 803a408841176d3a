"""How a QVM ranks steps on a label file it was not trained on: sibling AUC (the ranking A* needs
when it expands a node), pooled AUC, the question-mean reference, and the mean q of positive
rows by depth (a score falling with depth on correct paths pushes A* towards shallow nodes).

    python bench/qvm_ranking.py --labels held_out.jsonl --seeds 3000:3001 [--qvm DIR ...]

Every ``--qvm`` is scored on the same rows (default: the embedded default QVM). The label file
must come from ``qstar label`` on questions the QVMs never saw (other seeds).
"""

from __future__ import annotations

import argparse

import torch

from qstar_native.labels import read_labels
from qstar_native.pretrained import DEFAULT_QVM_DIR, load_policy, load_qvm
from qstar_native.tasks.load import load_problems
from qstar_native.tasks.math_task import MathTask
from qstar_native.value import QValueModel
from qstar_native.value.ranking import positive_score_by_depth, question_mean_auc, rank_auc, sibling_auc_ci, sibling_pair_count
from qstar_native.value.train import TrainData


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--seeds", required=True, help="the GSM-Symbolic seeds START:STOP the labels were made on")
    ap.add_argument("--qvm", action="append", help="QVM directory (repeatable; default: the embedded default)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start, stop = (int(x) for x in args.seeds.split(":"))
    policy = load_policy(None)
    src = load_problems(seeds=range(start, stop), prompt_template=policy.settings.prompt_template)
    task = MathTask(src.task, encode=policy.encode)
    prompts = {task.problem_id(p): src.task.prompt(p) for p in src.problems}
    rows = read_labels(args.labels)
    data = TrainData.from_rows(rows, encode=policy.encode, question_text=prompts.__getitem__)
    y, qids, sids = data.labels, list(data.question_ids), list(data.state_ids)
    print(f"{args.labels}: {len(rows)} rows, {len(set(qids))} questions, {len(set(sids))} states, "
          f"{sibling_pair_count(y, sids)} sibling pairs with different labels; "
          f"question-mean reference AUC {question_mean_auc(y, qids):.3f}")
    print("| QVM | sibling AUC [95% CI] | pooled AUC | mean q of positive rows by depth |")
    print("|---|---|---|---|")
    hidden = None
    for path in args.qvm or [str(DEFAULT_QVM_DIR)]:
        qvm = load_qvm(path, policy)
        with torch.inference_mode():
            if qvm.backbone is not None:
                q = qvm.score_sequences(data.seqs).float()
            else:  # a head on the policy's hidden states: the policy's forward, once for all heads
                if hidden is None:
                    hidden = QValueModel.from_pretrained(path, backbone=policy.model).hidden_states(data.seqs)
                q = qvm.score_hidden(hidden).float()
        auc, lo, hi = sibling_auc_ci(q, y, sids, qids)
        depth = ", ".join(f"{d['depth']}: {d['mean_q']:.2f}" for d in positive_score_by_depth(q, y, data.depths))
        print(f"| {path} | {auc:.3f} [{lo:.3f}, {hi:.3f}] | {rank_auc(q, y > 0.5):.3f} | {depth} |", flush=True)


if __name__ == "__main__":
    main()
