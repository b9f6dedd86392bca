"""Write tests/data/albert_tf/<layout>/: tiny ALBERT checkpoints saved by real TensorFlow, so that a reader
and a writer in distill.tf_checkpoint that share a mistake are caught (tests/test_albert_tf.py).

Two steps, two environments (TensorFlow is never a dependency of distill):

    .venv/bin/python scripts/make_tf_fixture.py variables     # random variables -> variables.npz, config, vocab
    /tmp/tfvenv/bin/python scripts/make_tf_fixture.py save    # a venv with tensorflow-cpu==2.21.0 google-crc32c

``save`` writes each layout's variables with ``tf.raw_ops.SaveV2`` and also checks the other direction:
TensorFlow's ``tf.train.load_checkpoint`` reads what ``distill.tf_checkpoint.write_checkpoint`` writes.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "albert_tf"
LAYOUTS = {"google": dict(groups=1, inner=2), "brightmart": {}}


def variables() -> None:
    from distill.testing import write_albert_tf_checkpoint

    for layout, extra in LAYOUTS.items():
        folder = OUT / layout
        with tempfile.TemporaryDirectory() as tmp:
            v = write_albert_tf_checkpoint(tmp, layout, seed=7, hidden=8, embedding=4, layers=2, heads=2, ffn=12, **extra)
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("albert_config.json", "vocab.txt"):
                (folder / name).write_bytes((Path(tmp) / name).read_bytes())
        np.savez(folder / "variables.npz", **{k.replace("/", "|"): a for k, a in v.items()})
        print(f"{folder}: {len(v)} variables")


def save() -> None:
    import tensorflow as tf

    sys.path.insert(0, str(ROOT))
    from distill.tf_checkpoint import write_checkpoint

    for layout in LAYOUTS:
        folder = OUT / layout
        stored = np.load(folder / "variables.npz")
        v = {k.replace("|", "/"): stored[k] for k in stored.files}
        names = sorted(v)
        tf.raw_ops.SaveV2(prefix=str(folder / "model.ckpt-1000"), tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[v[n] for n in names])
        (folder / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1000"\n')
        with tempfile.TemporaryDirectory() as tmp:
            write_checkpoint(Path(tmp) / "ours", v)
            reader = tf.train.load_checkpoint(str(Path(tmp) / "ours"))
            for n in names:
                got = np.asarray(reader.get_tensor(n))
                assert got.dtype == v[n].dtype and got.shape == v[n].shape and np.array_equal(got, v[n]), n
        print(f"{folder}: saved by TensorFlow {tf.__version__}; TensorFlow reads distill's writer: {len(names)} variables equal")


if __name__ == "__main__":
    {"variables": variables, "save": save}[sys.argv[1]]()
