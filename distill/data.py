"""Task data and unlabeled corpora, tokenized through ``datasets.map`` (cached on disk)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, load_dataset
from torch.utils.data import DataLoader, RandomSampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler

from distill.config import ConfigError, CorpusConfig, TaskConfig


def load_task(task: TaskConfig) -> DatasetDict:
    """The task's ``train`` and ``dev`` splits with columns text (, text_pair), label (int ids)."""
    if task.data_dir is not None:
        files = {"train": str(Path(task.data_dir) / task.train_file), "dev": str(Path(task.data_dir) / task.dev_file)}
        # GLUE TSVs hold raw quotes: read them as plain tab-separated fields
        raw = load_dataset("csv", data_files=files, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        try:
            hub = load_dataset(task.hub_name, task.hub_config)
        except Exception as err:  # offline, unknown name, ...
            raise ConfigError(
                f"task '{task.name}': cannot load {task.hub_name}/{task.hub_config} from the hub ({type(err).__name__}); "
                "set task.data_dir to a directory of GLUE-format TSV files"
            ) from err
        raw = DatasetDict(train=hub["train"], dev=hub[task.hub_dev_split])
    for split, ds in raw.items():
        for column in (task.text_field, task.text_pair_field, task.label_field):
            if column is not None and column not in ds.column_names:
                raise ConfigError(
                    f"task '{task.name}' {split} split has no column '{column}' (it has {ds.column_names}); "
                    "fix task.text_field / task.text_pair_field / task.label_field"
                )
        labels = set(ds.unique(task.label_field))
        if not labels <= set(range(task.num_labels)):
            raise ConfigError(
                f"task '{task.name}' {split} split has labels {sorted(labels)} outside 0..{task.num_labels - 1}; "
                "fix task.label_names"
            )
    limits = {"train": task.max_train_examples, "dev": task.max_dev_examples}
    out = DatasetDict()
    for split, ds in raw.items():
        if limits[split] is not None and limits[split] < len(ds):
            ds = ds.select(range(limits[split]))
        out[split] = ds
    return out


def tokenize_task(data: DatasetDict, task: TaskConfig, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
    def encode(batch):
        pair = batch[task.text_pair_field] if task.text_pair_field else None
        enc = tokenizer(batch[task.text_field], pair, truncation=True, max_length=task.max_length)
        enc["labels"] = batch[task.label_field]
        return enc

    columns = data["train"].column_names
    return data.map(encode, batched=True, remove_columns=columns, desc="tokenize")


def load_corpus(corpus: CorpusConfig, task: TaskConfig, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Unlabeled text, one example per line (truncated to ``corpus.max_length`` word pieces)."""
    if corpus.files:
        text = load_dataset("text", data_files={"train": list(corpus.files)})["train"]
        text = text.filter(lambda b: [bool(t.strip()) for t in b["text"]], batched=True)
        field = "text"
    else:
        text = load_task(task)["train"]
        field = task.text_field
    if corpus.max_examples is not None and corpus.max_examples < len(text):
        text = text.select(range(corpus.max_examples))
    return text.map(
        lambda b: tokenizer(b[field], truncation=True, max_length=corpus.max_length),
        batched=True,
        remove_columns=text.column_names,
        desc="tokenize corpus",
    )


def train_loader(ds: Dataset, tokenizer, batch_size: int, seed: int, group_by_length: bool) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    if group_by_length:
        # batches of similar length: SST-2 phrases are not padded to the longest sentence in a random batch
        lengths = [len(ids) for ids in ds["input_ids"]]
        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)
    else:
        sampler = RandomSampler(ds, generator=generator)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=DataCollatorWithPadding(tokenizer))


def eval_loader(ds: Dataset, tokenizer, batch_size: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=DataCollatorWithPadding(tokenizer))
