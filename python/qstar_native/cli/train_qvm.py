"""``qstar train-qvm``: fit a Q-value model to a label file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CLIError, add_common, add_task, load_policy, load_task, setup_torch

EXAMPLES = """examples:
  qstar train-qvm --labels labels.jsonl --seeds 2000:2003 --out my_qvm
  qstar train-qvm --labels labels.jsonl --model my_model --data train.jsonl --task gsm8k --head linear --out my_qvm
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-qvm", help="train a Q-value model on a label file (qstar label)",
        description="Trains a Q-value head on the policy's final hidden state at the last token of each "
        "labelled (state, step), with the policy frozen, so at search time Q costs no forward pass. "
        "Pass the same task options as to qstar label: they map question ids back to prompts.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_task(p, seeds="2000:2003")
    add_common(p)
    p.add_argument("--labels", required=True, help="label file written by qstar label")
    p.add_argument("--out", required=True, help="output directory for the QVM")
    p.add_argument("--head", choices=("linear", "mlp"), default="mlp", help="head kind (default mlp)")
    p.add_argument("--width", type=int, default=64, help="MLP head width (default 64)")
    p.add_argument("--epochs", type=int, default=60, help="epochs at most (default 60)")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (default 3e-3)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of questions held out for early stopping (default 0.1)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..labels import read_labels
    from ..tasks import DatasetFormatError
    from ..value import QValueModel
    from ..value.train import TrainConfig, TrainData, train_qvm

    setup_torch(args)
    if not Path(args.labels).is_file():
        raise CLIError(f"--labels {args.labels}: no such file; make one with qstar label")
    try:
        rows = read_labels(args.labels)
    except (DatasetFormatError, ValueError) as e:
        raise CLIError(f"--labels: {e}") from None
    if not rows:
        raise CLIError(f"--labels {args.labels} holds no rows")
    policy = load_policy(args)
    loaded = load_task(args, policy, purpose="train")
    prompts = {loaded.task.problem_id(p): loaded.task.task.prompt(p) for p in loaded.problems}
    missing = sorted({r.question_id for r in rows} - set(prompts))
    if missing:
        raise CLIError(f"--labels mentions question {missing[0]!r} (and {len(missing) - 1} more) not among the task's problems; pass the --task/--seeds/--data given to qstar label")
    # Each piece encoded alone, as the policy produced them: prompt, then step by step.
    enc = policy.encode
    seqs = tuple(torch.tensor(enc(prompts[r.question_id]) + [t for s in (*r.steps, r.candidate) for t in enc(s)], dtype=torch.int32).numpy() for r in rows)
    labels = torch.tensor([r.label for r in rows], dtype=torch.float32)
    data = TrainData(labels, tuple(r.question_id for r in rows), seqs=seqs)
    qvm = QValueModel(backbone=policy.model, head=args.head, mlp_width=args.width if args.head == "mlp" else None, out_act="sigmoid", seed=args.seed)
    config = TrainConfig(loss="bce", lr=args.lr, max_epochs=args.epochs, patience=8, val_fraction=args.val_fraction, seed=args.seed, weight_decay=1e-4)
    report = train_qvm(qvm, data, config)
    out = qvm.save_pretrained(args.out, save_backbone=False)
    info = {"policy": str(policy.path), "mode": "hidden", "labels": str(args.labels), "rows": len(rows),
            "positive": int((labels >= 1).sum()), "args": {k: v for k, v in vars(args).items() if k != "run"}, "report": report.to_dict()}
    (out / "train_report.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"QVM written to {out}: {len(rows)} rows, validation AUC {report.val_auc:.3f}, loss {report.initial_val_loss:.4f} -> {report.best_val_loss:.4f} (epoch {report.best_epoch})")
    return 0
