import random

import pytest
import torch

from distill.testing import write_tiny_teacher, write_tiny_tokenizer


@pytest.fixture(scope="session", autouse=True)
def datasets_cache(tmp_path_factory):
    """Tokenized data and teacher stores of the whole session in a temporary directory (subprocesses too): the user's
    cache gets nothing from the tests, and nothing a previous session stored there changes what a test sees."""
    import datasets

    path = tmp_path_factory.mktemp("hf_datasets")
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_DATASETS_CACHE", str(path))
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", path)
    yield path
    patch.undo()


@pytest.fixture(autouse=True)
def seed():
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random BERT teacher with a sequence-classification head, saved to disk."""
    d = tmp_path_factory.mktemp("tiny_teacher")
    torch.manual_seed(1)
    write_tiny_teacher(d, head="sequence_classification")
    return d


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture
def padded_batch(tokenizer):
    texts = ["the movie was very good", "bad", "a fun story and great acting but the plot was dull", "it is"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    batch["labels"] = torch.tensor([1, 0, 1, 0])
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    return dict(batch)
