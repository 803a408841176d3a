"""``qstar train-qvm``: fit a Q-value model to a label file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import CLIError, add_common, add_prompt, add_task, check_output_dir, finite, load_task, plan_model, policy_settings, positive_int, setup_torch

EXAMPLES = """examples:
  qstar train-qvm --labels labels.jsonl --seeds 2000:2003 --out my_qvm
  qstar train-qvm --labels labels.jsonl --rank-loss pairwise --rank-weight 4 --select-by sibling_auc --out my_qvm
  qstar train-qvm --labels labels.jsonl --model my_model --data train.jsonl --task gsm8k --head linear --out my_qvm
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-qvm", help="train a Q-value model on a label file (qstar label)",
        description="Trains a Q-value head on the policy's final hidden state at the last token of each labelled "
        "(state, step), with the policy frozen, so at search time Q costs no forward pass. Pass the same task options "
        "as to qstar label: they map question ids back to prompts. Prints validation AUC between sibling steps (the "
        "ranking search needs), pooled AUC, and the AUC of the per-question mean label (a reference that only tells "
        "questions apart).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_task(p, seeds="2000:2003")
    add_common(p)
    add_prompt(p, fewshot=True)
    p.add_argument("--labels", required=True, help="label file written by qstar label")
    p.add_argument("--out", required=True, help="output directory for the QVM")
    p.add_argument("--head", choices=("linear", "mlp"), default="mlp", help="head kind (default mlp)")
    p.add_argument("--width", type=positive_int, default=64, help="MLP head width (default 64)")
    p.add_argument("--epochs", type=positive_int, default=60, help="epochs at most (default 60)")
    p.add_argument("--lr", type=finite, default=3e-3, help="AdamW learning rate (default 3e-3)")
    p.add_argument("--val-fraction", type=finite, default=0.1, help="share of questions held out for early stopping (default 0.1)")
    p.add_argument("--rank-loss", choices=("none", "pairwise", "listwise"), default="none", help="within-state ranking term (default none)")
    p.add_argument("--rank-weight", type=finite, default=1.0, help="weight of the ranking term (default 1)")
    p.add_argument("--pointwise-weight", type=finite, default=1.0, help="weight of the pointwise BCE term (default 1)")
    p.add_argument("--select-by", choices=("loss", "sibling_auc"), default="loss", help="which validation number picks the epoch kept (default loss)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..labels import read_labels
    from ..tasks import DatasetFormatError
    from ..value import QValueModel
    from ..value.train import TrainConfig, TrainData, train_qvm

    if not Path(args.labels).is_file():
        raise CLIError(f"--labels {args.labels}: no such file; make one with qstar label")
    try:
        rows = read_labels(args.labels)
    except (DatasetFormatError, ValueError) as e:
        raise CLIError(f"--labels: {e}") from None
    if not rows:
        raise CLIError(f"--labels {args.labels} holds no rows")
    labels = [r.label for r in rows]
    positive = sum(y >= 1.0 for y in labels)
    if positive == 0 or positive == len(labels):
        raise CLIError(f"--labels {args.labels}: all {len(labels)} labels are {'1' if positive else '0'}, so there is nothing to learn; "
                       "label more (and harder or easier) problems, more --rollouts or --siblings in qstar label")  # fmt: skip
    if len(rows) < 100:
        print(f"qstar: warning: --labels {args.labels} holds only {len(rows)} rows; a QVM trained on so few will mostly guess "
              "(label more problems with qstar label)", file=sys.stderr)  # fmt: skip
    try:
        config = TrainConfig(loss="bce", lr=args.lr, max_epochs=args.epochs, patience=8, val_fraction=args.val_fraction, seed=args.seed,
                             weight_decay=1e-4, rank_loss=args.rank_loss, rank_weight=args.rank_weight,
                             pointwise_weight=args.pointwise_weight, select_by=args.select_by)  # fmt: skip
    except ValueError as e:
        raise CLIError(str(e)) from None
    settings = policy_settings(args)
    loaded = load_task(args, settings, purpose="train")
    plan = plan_model(args, settings, loaded.fewshot)
    plan.check_task(loaded)
    check_output_dir(args.out, "--out")
    setup_torch(args)
    policy = plan.load()
    task = loaded.task(policy)
    prompts = {task.problem_id(p): task.prompt(p) for p in loaded.problems}
    missing = sorted({r.question_id for r in rows} - set(prompts))
    if missing:
        raise CLIError(f"--labels mentions question {missing[0]!r} (and {len(missing) - 1} more) not among the task's problems; pass the --task/--seeds/--data given to qstar label")
    data = TrainData.from_rows(rows, encode=policy.encode, question_text=prompts.__getitem__)
    qvm = QValueModel(backbone=policy.model, head=args.head, mlp_width=args.width if args.head == "mlp" else None, out_act="sigmoid", seed=args.seed)
    try:
        report = train_qvm(qvm, data, config)
    except ValueError as e:
        raise CLIError(str(e)) from None
    out = qvm.save_pretrained(args.out, save_backbone=False)
    info = {"policy": "default" if args.model is None else str(args.model), "mode": "hidden", "labels": Path(args.labels).name, "rows": len(rows),
            "positive": int(positive), "args": {k: v for k, v in vars(args).items() if k not in ("run", "labels", "out", "model")},
            "report": report.to_dict()}  # fmt: skip
    (out / "train_report.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"QVM written to {out}: {len(rows)} rows ({positive} positive), epoch {report.best_epoch} kept")
    lo, hi = report.val_sibling_auc_ci
    print(f"validation: sibling AUC {report.val_sibling_auc:.3f} [{lo:.3f}, {hi:.3f}] over {report.n_val_sibling_pairs} pairs, pooled AUC {report.val_auc:.3f}, "
          f"question-mean reference AUC {report.val_question_mean_auc:.3f}, loss {report.initial_val_loss:.4f} -> {report.best_val_loss:.4f}")  # fmt: skip
    if report.val_positive_q_by_depth:
        print("mean q of positive validation rows by depth: " + ", ".join(f"{d['depth']}: {d['mean_q']:.2f} (n {d['n']})" for d in report.val_positive_q_by_depth))
    return 0
