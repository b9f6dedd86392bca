"""One phase of TextBrewer 0.2.1's task distillation, in the setting of scripts/cold_start.sh.

Run by scripts/textbrewer_side_by_side.sh in its own venv (.venv-textbrewer: torch, transformers and
textbrewer, no distill), once per phase, as a TextBrewer user runs it: two processes.

- intermediate: embedding-output and hidden-state MSE through a trainable Linear(312 -> 384) per match,
  attention MSE on the attention maps, teacher layers 1, 3, 4, 6 for student layers 1-4 (distill's
  uniform map), lr 5e-5 constant; the student is saved for the next process.
- prediction: soft CE on the logits (T=1), lr 3e-5, linear schedule with 10% warm-up.

Both: SST-2 train.tsv tokenized up front (max length 64), shuffled batches of 32 padded per batch, AdamW,
a random 4-layer H312 E128 ALBERT (blocks of 2 layers share weights, 12 heads, FFN 1200: distill's
student=tinybert4), the same seed. The student and the teacher run eager attention in the intermediate
phase (TextBrewer reads the attention maps) and transformers' default (sdpa) in the prediction phase.

Prints one JSON line: the phase's steps, training seconds (first step to the end of train()), examples/s
over all steps and over steps 10 onwards (steady state), and the process's seconds before training.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time

_start = time.perf_counter()

import torch  # noqa: E402
from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig  # noqa: E402
from transformers import (AlbertConfig, AlbertForSequenceClassification, AutoModelForSequenceClassification,  # noqa: E402
                          AutoTokenizer, get_linear_schedule_with_warmup)

TEACHER_LAYERS = [1, 3, 4, 6]
BATCH = 32


def student(attn: str) -> AlbertForSequenceClassification:
    config = AlbertConfig(vocab_size=30522, embedding_size=128, hidden_size=312, num_hidden_layers=4,
                          num_hidden_groups=2, num_attention_heads=12, intermediate_size=1200, hidden_act="gelu",
                          hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
                          type_vocab_size=2, num_labels=2, attn_implementation=attn)
    return AlbertForSequenceClassification(config)


def batches(train_tsv: str, tokenizer, seed: int):
    with open(train_tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    enc = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=64)
    examples = [{"input_ids": ids, "token_type_ids": tt, "attention_mask": am, "labels": int(r["label"])}
                for ids, tt, am, r in zip(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], rows)]

    def collate(items):  # padded to the batch's longest row
        width = max(len(x["input_ids"]) for x in items)
        out = {k: torch.tensor([x[k] + [0] * (width - len(x[k])) for x in items])
               for k in ("input_ids", "token_type_ids", "attention_mask")}
        out["labels"] = torch.tensor([x["labels"] for x in items])
        return out

    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(examples, batch_size=BATCH, shuffle=True, collate_fn=collate,
                                       generator=generator, drop_last=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["intermediate", "prediction"])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--train-tsv", required=True)
    parser.add_argument("--student-state", required=True, help="written by intermediate, read by prediction")
    parser.add_argument("--out", required=True, help="TextBrewer's output_dir (its checkpoints and logs)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    intermediate = args.phase == "intermediate"
    attn = "eager" if intermediate else "sdpa"

    tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher, attn_implementation=attn).eval()
    model = student(attn)
    if not intermediate:
        model.load_state_dict(torch.load(args.student_state))
    loader = batches(args.train_tsv, tokenizer, args.seed)

    def adaptor(batch, out):
        found = {"logits": out.logits, "inputs_mask": batch["attention_mask"]}
        if intermediate:
            found.update(hidden=out.hidden_states, attention=out.attentions)
        return found

    if intermediate:
        matches = [{"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1,
                    "proj": ["linear", 312, 384]}]
        for s, t in enumerate(TEACHER_LAYERS, start=1):
            matches.append({"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1,
                            "proj": ["linear", 312, 384]})
            matches.append({"layer_T": t - 1, "layer_S": s - 1, "feature": "attention", "loss": "attention_mse",
                            "weight": 1})
        distill_config = DistillationConfig(temperature=1, kd_loss_weight=0, hard_label_weight=0,
                                            intermediate_matches=matches)
        lr, schedule = 5e-5, {"output_hidden_states": True, "output_attentions": True}  # passed to both models
    else:
        distill_config = DistillationConfig(temperature=1, kd_loss_weight=1, hard_label_weight=0,
                                            kd_loss_type="ce")
        lr = 3e-5
        schedule = {"scheduler_class": get_linear_schedule_with_warmup,
                    "scheduler_args": {"num_warmup_steps": args.steps // 10, "num_training_steps": args.steps}}
    train_config = TrainingConfig(device="cpu", output_dir=args.out, log_dir=args.out, ckpt_steps=args.steps)
    distiller = GeneralDistiller(train_config=train_config, distill_config=distill_config, model_T=teacher,
                                 model_S=model, adaptor_T=adaptor, adaptor_S=adaptor)
    # the labels stay out of the models' calls: TextBrewer's loss is the distillation loss alone
    stamps: list[float] = []

    def stamp(batch):
        stamps.append(time.perf_counter())
        return {k: v for k, v in batch.items() if k != "labels"}

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    setup_seconds = time.perf_counter() - _start
    with distiller:
        distiller.train(optimizer, loader, num_steps=args.steps, batch_postprocessor=stamp, **schedule)
    end = time.perf_counter()
    if intermediate:
        torch.save(model.state_dict(), args.student_state)
    steady_from = 10
    print(json.dumps({
        "phase": args.phase, "steps": len(stamps), "setup_seconds": setup_seconds,
        "train_seconds": end - stamps[0],
        "train_examples_per_second": len(stamps) * BATCH / (end - stamps[0]),
        "steady_examples_per_second": (len(stamps) - steady_from) * BATCH / (end - stamps[steady_from]),
    }))


if __name__ == "__main__":
    main()
