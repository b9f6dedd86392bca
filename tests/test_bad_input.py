"""Bad configs, data, teachers and checkpoints: one clear line each, before any long work."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.stages import run
from distill.checkpoint import Checkpoints
from distill.errors import ConfigError
from distill.rundir import RUN_FILES
from distill.testing import write_tiny_workspace

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline import compose_cfg, overrides  # noqa: E402


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return write_tiny_workspace(tmp_path_factory.mktemp("bad"), 16, 8,
                                {"teacher": "base", "finetuned": "sequence_classification"})


CASES = [
    ("general", ["stage.phases.0.weights.relation=1.0", "stage.loss.relation_heads=5"],
     "stage.loss.relation_heads=5 does not divide the student's width 16; choose a common divisor of both widths"),
    ("general", ["stage.phases.0.weights.relation=1.0", "stage.loss.relation_teacher_layer=9"],
     r"stage.loss.relation_teacher_layer=9 is out of range; the teacher has layers 1..4"),
    ("general", ["student.hidden_size=30", "student.num_heads=4"], "student.hidden_size=30 is not divisible by student.num_heads=4"),
    ("general", ["student.sharing=every_k", "student.k=3"], "student.k=3 does not divide student.num_layers=2"),
    ("general", ["student.sharing=some"], "student.sharing='some' is unknown"),
    ("general", ["stage.layer_map=[1,9]"], r"G\(2\) = 9 is out of range; teacher layers are 1..4"),
    ("general", ["stage.layer_map=[1,2,3]"], "the list has 3 entries but the student has 2 layers"),
    ("general", ["student.num_heads=2"], "student.num_heads=2 but the teacher has 4 heads"),
    ("general", ["stage.phases.0.lr=0"], r"stage.phases\[0\] \(general\).lr=0.0 must be > 0"),
    ("general", ["stage.phases.0.scheduler=cosinus"], "scheduler='cosinus' is unknown"),
    ("general", ["stage.phases.0.weights.hidden=-1"], "loss weights must be >= 0"),
    ("general", ["train.batch_size=0"], "train.batch_size=0 must be >= 1"),
    ("general", ["train.mixed_precision=fp8"], "train.mixed_precision='fp8' is unknown"),
    ("general", ["train.on_nonfinite=ignore"], "train.on_nonfinite='ignore' is unknown"),
    ("general", ["corpus.packing=zip"], "corpus.packing='zip' is unknown"),
    ("general", ["corpus.files=[/no/such/file.txt]"], "corpus.files: /no/such/file.txt does not exist"),
    ("general", ["corpus.max_length=1000"], r"corpus.max_length=1000 must be in 8..student.max_position_embeddings \(64\)"),
    ("general", ["teacher.name_or_path=/no/such/teacher"], "model /no/such/teacher cannot be loaded"),
    ("general", ["stage.loss.temperature=0"], "stage.loss.temperature=0.0 must be > 0"),
    ("teacher", ["task.metrics=[accuracy,auc]"], "task.metrics='auc' is unknown"),
    ("teacher", ["task.label_names=[only]"], "needs at least two labels"),
    ("teacher", ["task.data_dir=/no/such/dir"], "task.data_dir: /no/such/dir/train.tsv does not exist"),
    ("teacher", ["resume=/no/such/checkpoint"], "resume=/no/such/checkpoint: not a checkpoint directory"),
    ("teacher", ["resume=true", "overwrite=true"], "resume and overwrite=true contradict each other"),
    ("task", ["task.label_names=[a,b,c]"], "the fine-tuned teacher has 2 labels but task 'sst2' has 3"),
    ("task", ["student.num_heads=2", "stage.loss.attention_head_reduction=mean", "stage.loss.tinybert_compat=true"],
     r"student.num_heads=2 but the teacher has 4 heads.*tinybert_compat=true has no head reduction"),
    ("task", ["augment.enabled=true", "augment.p=1.5"], r"augment.p=1.5 must be in \[0, 1\]"),
    ("task", ["augment.enabled=true", "augment.candidates=glove"], "augment.candidates='glove' is unknown"),
    ("task", ["augment.enabled=true", "augment.candidates=mlm"], "augment.candidates=mlm but augment.model=.* has no masked-LM head"),
    ("augment", ["augment.vectors=/no/such/glove.txt"], "augment.vectors: /no/such/glove.txt does not exist"),
    ("teacher", ["augment.enabled=true"], "augment.enabled=true applies to stage=task"),
    ("general", ["stage.phases.0.weights.embedding=0", "stage.phases.0.weights.hidden=0", "stage.phases.0.weights.attention=0"],
     r"stage.phases\[0\] \(general\).weights are all 0; turn on at least one of embedding, hidden"),
    ("teacher", ["stage.phases.0.weights.soft_ce=1"], "stage=teacher fine-tunes the teacher on the labels alone; use hard_ce only"),
    ("task", ["stage.phases.0.weights.mlm=1"], "the mlm loss needs a masked-LM student: only stage=general trains one"),
    ("general", ["stage.loss.temperature=0"], "stage.loss.temperature=0.0 must be > 0"),
    ("general", ["stage.loss.attention_head_reduction=max"], "stage.loss.attention_head_reduction='max' is unknown"),
    ("general", ["stage.loss.balance=first"], "stage.loss.balance='first' is unknown"),
    ("general", ["stage.loss.balance=initial", "stage.loss.tinybert_compat=true"],
     "stage.loss.balance=initial is not TinyBERT's formula; set stage.loss.balance=none"),
    ("task", ["augment.enabled=true", "augment.model=/no/such/mlm"], "augment.model: the model /no/such/mlm cannot be loaded"),
]


@pytest.mark.parametrize("stage, bad, message", CASES, ids=[" ".join(c[1]) for c in CASES])
def test_bad_config_is_one_line_naming_field_and_fix(ws, stage, bad, message):
    cfg = compose_cfg(ws, f"stage={stage}", f"teacher.finetuned={ws / 'finetuned'}", f"run_dir={ws / 'runs' / 'x'}", *bad)
    with pytest.raises(ConfigError, match=message) as err:
        run(cfg)
    line = next(line for line in str(err.value).splitlines() if __import__("re").search(message, line))
    assert len(line) < 300
    assert not (ws / "runs" / "x" / "config.yaml").exists(), "the run started before validation finished"


def test_a_finetuned_teacher_without_its_classifier_is_refused(ws, tmp_path):
    """Its logits would be random soft targets: refused in one line, not loaded with a fresh head."""
    import json
    import shutil

    # up front, from config.json: a bare encoder is no fine-tuned teacher
    cfg = compose_cfg(ws, "stage=task", f"teacher.finetuned={ws / 'teacher'}", f"run_dir={tmp_path / 'a'}")
    with pytest.raises(ConfigError, match=r"is a BertModel, with no classifier to give soft targets"):
        run(cfg)
    assert not (tmp_path / "a" / "config.yaml").exists()
    # a config that claims a classifier over weights without one: refused when the weights load
    liar = tmp_path / "liar"
    shutil.copytree(ws / "teacher", liar)
    config = json.loads((liar / "config.json").read_text())
    (liar / "config.json").write_text(json.dumps({**config, "architectures": ["BertForSequenceClassification"]}))
    cfg = compose_cfg(ws, "stage=task", f"teacher.finetuned={liar}", f"run_dir={tmp_path / 'b'}", "general_student=null")
    with pytest.raises(ConfigError, match=r"has no trained sequence_classification head \(classifier.bias, "
                                          r"classifier.weight not in its weights\)"):
        run(cfg)
    assert not (tmp_path / "b" / "metrics.json").exists()


def test_all_problems_are_reported_together(ws):
    cfg = compose_cfg(ws, "stage=general", f"run_dir={ws / 'runs' / 'y'}", "train.batch_size=0",
                      "stage.phases.0.lr=-1", "student.num_heads=3", "corpus.packing=zip")
    with pytest.raises(ConfigError) as err:
        run(cfg)
    lines = str(err.value).splitlines()
    # the four bad fields, plus 3 heads against the teacher's 4
    assert len(lines) == 5, lines


def test_truncated_teacher_weights(ws, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ws / "finetuned", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cfg = compose_cfg(ws, "stage=task", f"teacher.finetuned={broken}", f"run_dir={tmp_path / 'run'}", "general_student=null")
    with pytest.raises(ConfigError, match=f"model {broken} cannot be loaded .*complete model directory"):
        run(cfg)


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "step-0-3").mkdir()
    (tmp_path / "step-0-3" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"checkpoint .*step-0-3 cannot be read .*delete it to resume from the one before"):
        Checkpoints.load(tmp_path / "step-0-3")


def test_general_student_from_another_vocabulary(ws, tmp_path):
    from distill.config import StudentShape
    from distill.student import build_student
    from distill.testing import write_tiny_tokenizer

    other = write_tiny_tokenizer(tmp_path / "tok")
    other.add_tokens(["extra"])
    shape = StudentShape(num_layers=2, hidden_size=16, embedding_size=8, num_heads=4, intermediate_size=20,
                         sharing="all", max_position_embeddings=64)
    build_student(shape, other).save_pretrained(tmp_path / "general")
    cfg = compose_cfg(ws, "stage=task", f"teacher.finetuned={ws / 'finetuned'}", f"run_dir={tmp_path / 'run'}",
                      f"general_student={tmp_path / 'general'}")
    with pytest.raises(ConfigError, match=f"has a vocabulary of {len(other)} but the teacher's tokenizer has {len(other) - 1}"):
        run(cfg)


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_nonfinite_loss_stops_or_skips(ws, tmp_path, monkeypatch, mode):
    from distill.terms.hard_ce import HardCrossEntropy
    from distill.errors import NonFiniteLoss

    calls = {"n": 0}
    original = HardCrossEntropy.forward

    def nan_on_third_batch(self, z, y):
        calls["n"] += 1
        loss = original(self, z, y)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(HardCrossEntropy, "forward", nan_on_third_batch)
    cfg = compose_cfg(ws, "stage=teacher", f"run_dir={tmp_path / 'run'}", "train.checkpoint_every=1",
                      f"train.on_nonfinite={mode}", "stage.phases.0.eval_every=0")
    if mode == "stop":
        with pytest.raises(NonFiniteLoss, match=r"phase 'finetune' step 2: loss term hard_ce is nan; "
                                                r"last good checkpoint: .*step-0-2"):
            run(cfg)
        assert not (tmp_path / "run" / "metrics.json").exists()
    else:
        metrics = run(cfg)
        assert metrics["nonfinite_skips"] == 1 and metrics["steps"] == 4


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m distill ...`` as a user runs it: its exit code, stdout and stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "distill", *args], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1])


# configs that once passed the up-front checks and failed only after the corpus was packed and both models
# loaded (with a traceback, leaving a claimed run directory that then refused a re-run as 'unfinished')
LATE_FAILURES = [
    (["recipe=distilbert", "student.num_layers=8", "student.hidden_size=32", "student.num_heads=4",
      "student.intermediate_size=20", "student.embedding_size=32"],
     r"^error: stage.layer_map: G\(1\) = 0 is out of range; teacher layers are 1..4"),
    (["stage=task", "general_student=null", "student.num_heads=2", "stage.loss.attention_head_reduction=mean",
      "stage.loss.tinybert_compat=true"],
     r"^error: student.num_heads=2 but the teacher has 4 heads.*tinybert_compat=true has no head reduction"),
]


@pytest.mark.parametrize("bad, message", LATE_FAILURES, ids=["distilbert_8_layers", "tinybert_compat_heads"])
def test_late_failing_configs_fail_up_front_in_one_line(ws, tmp_path, bad, message):
    import re

    run_dir = tmp_path / "run"
    args = overrides(ws, f"teacher.name_or_path={ws / 'teacher'}", f"teacher.finetuned={ws / 'finetuned'}",
                     f"run_dir={run_dir}", "corpus.fetch=[news]", *bad)
    started = time.perf_counter()
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # nothing was loaded or packed (the news corpus alone takes minutes), and the run directory stays free
    # (Hydra's own .hydra/ and log aside): the fixed command runs without overwrite=true
    assert time.perf_counter() - started < 60
    assert not [name for name in RUN_FILES if (run_dir / name).exists()]


def test_a_typo_in_general_student_is_an_error_not_a_random_student(ws, tmp_path):
    cfg = compose_cfg(ws, "stage=task", f"teacher.finetuned={ws / 'finetuned'}", f"run_dir={tmp_path / 'run'}",
                      f"general_student={tmp_path / 'genral' / 'model'}")
    with pytest.raises(ConfigError, match=r"general_student=.*genral/model is not a saved model directory \(no "
                                          r"config.json\); point it at a general stage's model/ directory"):
        run(cfg)
    assert not (tmp_path / "run").exists()


def test_general_student_auto_reads_the_general_stage_of_this_shape(ws, tmp_path):
    from distill.checks import check

    cfg = compose_cfg(ws, "stage=task", f"runs_root={tmp_path}", f"teacher.finetuned={ws / 'finetuned'}")
    assert cfg.general_student == "auto" and cfg.general_student_dir() is None
    # none yet: the run would train a random student, so it stops and names the three ways on
    with pytest.raises(ConfigError, match=r"^stage=task would start a random student: there is no general student at "
                                          r".*/general/L2_H16_E8_A4_I20_shareall/model; run stage=general with this "
                                          r"student first, set stage.init.layers=teacher to start from the teacher's "
                                          r"layers, or general_student=null for random weights on purpose$"):
        check(cfg)
    for choice in ("general_student=null", "stage.init.layers=teacher", "stage.init.embedding=teacher"):
        check(compose_cfg(ws, "stage=task", f"runs_root={tmp_path}", choice, "student.hidden_size=32",
                          "student.embedding_size=32", "student.intermediate_size=37", f"teacher.finetuned={ws / 'finetuned'}"))
    saved = tmp_path / "general" / cfg.student.tag() / "model"
    saved.mkdir(parents=True)
    (saved / "config.json").write_text("{}")
    assert cfg.general_student_dir() == saved
    check(cfg)
    # from the general student only the head is copied: an embedding or an ALBERT asked for as well is an error,
    # not a setting ignored without a word
    with pytest.raises(ConfigError, match=r"stage.init.embedding=svd_train would be ignored: with stage.init.layers="
                                          r"random the task stage starts from the general student .*/model and keeps "
                                          r"its embedding; set stage.init.embedding=random, or general_student=null"):
        check(compose_cfg(ws, "stage=task", f"runs_root={tmp_path}", "stage.init.embedding=svd_train",
                          f"teacher.finetuned={ws / 'finetuned'}"))
    with pytest.raises(ConfigError, match=r"stage.init.albert_dir=.*/model would be ignored: .* set general_student="
                                          r"null to start from the converted ALBERT"):
        check(compose_cfg(ws, "stage=task", f"runs_root={tmp_path}", f"stage.init.albert_dir={saved}",
                          f"teacher.finetuned={ws / 'finetuned'}"))
    check(compose_cfg(ws, "stage=task", f"runs_root={tmp_path}", f"stage.init.albert_dir={saved}", "general_student=null",
                      f"teacher.finetuned={ws / 'finetuned'}"))


def test_the_random_start_refusal_comes_from_the_command_in_one_line(ws, tmp_path):
    args = overrides(ws, "stage=task", f"teacher.finetuned={ws / 'finetuned'}", f"runs_root={tmp_path}")
    result = cli(*args)
    assert result.returncode == 2 and result.stderr.startswith("error: stage=task would start a random student")
    assert len(result.stderr.strip().splitlines()) == 1
    run_dir = tmp_path / "task" / "sst2" / "L2_H16_E8_A4_I20_shareall"
    assert not [name for name in RUN_FILES if (run_dir / name).exists()]  # Hydra's .hydra/ aside, nothing


@pytest.mark.parametrize("override, message", [
    ("stage.phases.max_steps=8", r"^error: stage.phases.max_steps=8: stage.phases is a list; index it "
                                 r"\(stage.phases.0.max_steps=8 for the first\), or train.max_steps=8 for every phase$"),
    ("train.batch_size=abc", r"^error: Error merging override train.batch_size=abc; Value 'abc' of type 'str' could not "
                             r"be converted to Integer; python -m distill --cfg job shows every key and its type$"),
    ("train.batchsize=8", r"^error: Could not override 'train.batchsize'; Key 'batchsize' not in 'TrainConfig'"),
    ("task=sst3", r"^error: In 'config': Could not find 'task/sst3'; Available options in 'task': cola, mrpc, "
                  r"rt_polarity, rte, sst2, zh_reviews;"),
])
def test_an_override_hydra_cannot_apply_is_one_line_and_exit_2(override, message):
    import re

    for extra in ([], ["--cfg", "job"]):
        result = cli(override, *extra)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and re.search(message, lines[0]), result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_cli_maps_every_distill_error_to_one_line_and_its_exit_code(capsys):
    from distill.cli import exit_code
    from distill.errors import Interrupted, NonFiniteLoss

    def fail(err):
        def command():
            raise err
        return command

    assert exit_code(fail(ConfigError("a.b=1 is wrong; set a.b=2\nc=3 is wrong; set c=4"))) == 2
    assert exit_code(fail(NonFiniteLoss("phase 'x' step 3: loss term hidden is nan"))) == 3
    assert exit_code(fail(Interrupted("SIGTERM at phase 'x' step 3"))) == 130
    assert capsys.readouterr().err.splitlines() == [
        "error: a.b=1 is wrong; set a.b=2", "error: c=3 is wrong; set c=4",
        "error: phase 'x' step 3: loss term hidden is nan", "interrupted: SIGTERM at phase 'x' step 3"]
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        exit_code(lambda: 1 / 0)


def test_the_schema_and_checks_import_no_model_code():
    code = ("import sys, distill.config, distill.checks; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_python_m_a_library_module_names_the_command_to_use():
    """`python -m distill.report` once ran nothing (exit 0) after report lost its __main__ block to the one command."""
    for module, expected in [("distill.report", "use: python -m distill report ..."),
                             ("distill.reference.bench_train", "use: python -m distill bench train ..."),
                             ("distill.losses", None), ("distill.trainer", "python -m distill --help lists the commands")]:
        proc = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True)
        if expected is None:  # no such module: Python's own error
            assert proc.returncode == 1 and "No module named distill.losses" in proc.stderr
            continue
        assert proc.returncode == 2 and proc.stderr == f"error: {module} is a library module, not a command; {expected}\n", \
            proc.stderr


def test_a_teacher_or_source_outside_the_supported_families_is_refused_up_front(ws, tmp_path):
    """A family distill has no adapter for (distill/families) is one line before any model is loaded, whether it is
    the teacher or the model the student is copied from (stage.init.source), not a key-mismatch traceback later."""
    from transformers import ElectraConfig

    electra = tmp_path / "electra"
    ElectraConfig(vocab_size=63, hidden_size=32, embedding_size=32, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=37, architectures=["ElectraForSequenceClassification"]).save_pretrained(electra)
    shape = ["student.hidden_size=32", "student.embedding_size=32", "student.intermediate_size=20", "student.num_heads=4"]
    for override, field in [(f"teacher.finetuned={electra}", "teacher.finetuned"),
                            (f"stage.init.source={electra}", "stage.init.source")]:
        cfg = compose_cfg(ws, "recipe=fast", f"teacher.finetuned={ws / 'finetuned'}", override, f"run_dir={tmp_path / 'a'}", *shape)
        with pytest.raises(ConfigError, match=rf"^{field}: model_type 'electra' is not a supported teacher family "
                                              r"\(bert, camembert, mpnet, roberta, xlm-roberta\); ") as err:
            run(cfg)
        assert len(str(err.value).splitlines()) == 1 and not (tmp_path / "a" / "config.yaml").exists()
