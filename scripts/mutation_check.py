"""Apply deliberate bugs to a copy of the project, one at a time, and show the tests catch each.

``python scripts/mutation_check.py [--only NAME] [tests ...]``

For every mutation: copy the project's code, configs and tests into a scratch directory beside the
repository, change one line, run pytest there on the reference-test files (by default the fast ones
that recompute numbers independently) and report which tests failed. A mutation that no test
catches is a hole in the suite: the script exits 1. The unmutated copy must pass first.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/test_reference_terms.py", "tests/test_losses.py", "tests/test_layer_map.py", "tests/test_metrics.py",
    "tests/test_teacher_objective.py", "tests/test_teacher_cache.py", "tests/test_task_init.py",
]
AUGMENT_TESTS = ["tests/test_augment.py::test_batched_candidates_equal_the_one_forward_per_word_reference"]
CONVERT_TESTS = ["tests/test_albert_tf.py"]
FAMILY_TESTS = ["tests/test_families.py"]
# (name, file, exact text, replacement[, tests]): each text occurs exactly once in its file
MUTATIONS = [
    ("soft CE with student and teacher swapped", "distill/terms/soft_ce.py",
     "return self(s.logits, t.logits)", "return self(t.logits, s.logits)"),
    ("attention MSE without the padding mask", "distill/terms/attention.py",
     "        real = mask.bool()\n        valid =", "        real = torch.ones_like(mask).bool()\n        valid ="),
    ("T instead of T^2", "distill/terms/soft_ce.py",
     "self.scale = temperature**2 if scale_by_t2 else 1.0", "self.scale = temperature if scale_by_t2 else 1.0"),
    ("layer map off by one (hidden states)", "distill/layer_map.py",
     "return [(m, t) for m, t in enumerate(self.targets, start=1)]",
     "return [(m, t - 1) for m, t in enumerate(self.targets, start=1)]"),
    ("layer map off by one (attention)", "distill/layer_map.py",
     "return [(m - 1, t - 1) for m, t in enumerate(self.targets, start=1)]",
     "return [(m - 1, t - 2) for m, t in enumerate(self.targets, start=1)]"),
    ("hidden/embedding MSE averaged over padding", "distill/terms/base.py",
     "    if mask is None:\n        return nn.functional.mse_loss(student, teacher)",
     "    if True:\n        return nn.functional.mse_loss(student, teacher)"),
    ("cosine averaged over padding", "distill/terms/cosine.py",
     "return (1.0 - cos)[real].mean()", "return (1.0 - cos).mean()"),
    ("attention scores after softmax", "distill/attention.py",
     "    return output, scores\n", "    return output, probs\n"),
    ("masked-LM terms read at every real token", "distill/objective.py",
     'masked = batch["labels"] != -100', 'masked = batch["attention_mask"].bool()'),
    ("F1 counted as accuracy", "distill/evaluation.py",
     '"f1": f1_score,', '"f1": accuracy_score,'),
    ("stored teacher logits zeroed", "distill/teacher_cache.py",
     "logits = read(self.logits).to(device)", "logits = 0 * read(self.logits).to(device)"),
    ("a first-epoch batch's layers not rounded as stored", "distill/teacher_cache.py",
     "return torch.where(keep, x.half().float(), 0.0)", "return torch.where(keep, x, 0.0)"),
    ("augmentation replaces stop words", "distill/augment.py",
     "text.lower() in STOP_WORDS)", "text.lower() in ())", AUGMENT_TESTS),
    ("augmentation proposes sub-word pieces", "distill/families/base.py",
     "return token.startswith(self.marker) == self.marks_start", "return True", AUGMENT_TESTS),
    ("TF kernels not transposed", "distill/albert_tf.py",
     "value = value.T if transpose else value", "value = value", CONVERT_TESTS),
    ("TF's gelu read as exact gelu", "distill/albert_tf.py",
     'ACTIVATIONS = {"gelu": "gelu_new",', 'ACTIVATIONS = {"gelu": "gelu",', CONVERT_TESTS),
    ("checkpoint index keys read without their shared prefix", "distill/tf_checkpoint.py",
     "key = key[:shared] + block[pos : pos + non_shared]", "key = block[pos : pos + non_shared]", CONVERT_TESTS),
    ("relation KL with student and teacher swapped", "distill/terms/relation.py",
     "log_t.exp() * (log_t - log_s)", "log_s.exp() * (log_s - log_t)"),
    ("relation scores over padded keys", "distill/terms/relation.py",
     "scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)", "scores = scores"),
    ("relation read from a shared block's first call whatever the layer", "distill/attention.py",
     "return [block.get_submodule(name) for name in QKV_TARGETS], (layer - 1) % per_group",
     "return [block.get_submodule(name) for name in QKV_TARGETS], 0"),
    ("stored Q and K read back swapped", "distill/teacher_cache.py",
     "        q, k, v = torch.from_numpy(gather_tokens(", "        k, q, v = torch.from_numpy(gather_tokens("),
    ("RoBERTa positions copied row for row (off by two)", "distill/families/roberta.py",
     "position_offset=lambda config: config.pad_token_id + 1,", "position_offset=lambda config: 0,", FAMILY_TESTS),
    ("RoBERTa's dense + out_proj head copied as BERT's", "distill/families/base.py",
     'if classifier is not None and hasattr(classifier, "out_proj"):', "if False:", FAMILY_TESTS),
    ("MPNet scores without the relative position bias", "distill/families/mpnet.py",
     "        scores = scores + position_bias\n", "        scores = scores\n", FAMILY_TESTS),
]


def copy_project(dest: Path) -> None:
    for name in ("distill", "tests"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")


def run_tests(copy: Path, tests: list[str]) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(copy), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    where = subprocess.run([sys.executable, "-c", "import distill; print(distill.__file__)"], cwd=copy, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(str(copy)):
        raise SystemExit(f"error: the copy is not what imports (distill from {where}); run from a plain venv")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                         cwd=copy, env=env, capture_output=True, text=True)
    failed = sorted(set(re.findall(r"^FAILED (\S+?)(?: - |$)", out.stdout, re.M)))
    return out.returncode, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="*", default=TESTS)
    parser.add_argument("--only", help="run only the mutations whose name contains this")
    args = parser.parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or args.only in m[0]]
    with tempfile.TemporaryDirectory(prefix=".mutation-", dir=REPO.parent) as scratch:
        base = Path(scratch) / "base"
        copy_project(base)
        code, failed = run_tests(base, sorted({*args.tests, *AUGMENT_TESTS, *CONVERT_TESTS}))
        if code != 0:
            print(f"error: the unmutated suite fails ({', '.join(failed) or 'see pytest'}); fix that first")
            return 2
        print(f"unmutated: the {len(args.tests)} test files, the augmentation parity test and the TF conversion tests pass")
        survivors = []
        for name, file, text, replacement, *only in mutations:
            tests = only[0] if only else args.tests
            copy = Path(scratch) / "mutant"
            shutil.rmtree(copy, ignore_errors=True)
            copy_project(copy)
            path = copy / file
            source = path.read_text()
            if source.count(text) != 1:
                raise SystemExit(f"error: mutation '{name}': the text occurs {source.count(text)} times in {file}")
            path.write_text(source.replace(text, replacement))
            code, failed = run_tests(copy, tests)
            caught = code != 0
            if not caught:
                survivors.append(name)
            shown = ", ".join(f.split("::")[-1] for f in failed[:3]) + (f" (+{len(failed) - 3} more)" if len(failed) > 3 else "")
            print(f"{'CAUGHT ' if caught else 'MISSED '} {name} [{file}]: {len(failed)} failing: {shown}")
    print(f"\n{len(mutations) - len(survivors)}/{len(mutations)} mutations caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
