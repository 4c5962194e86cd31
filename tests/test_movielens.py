"""MovieLens download, cache and parsers, tested offline on synthetic zips in upstream layout."""

from __future__ import annotations

import hashlib
import io
import socket
import urllib.error
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from m6rec_lib.data import DataError
from m6rec_lib.data import movielens as ml

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "movielens"


def make_zip(name: str, dest: Path) -> Path:
    """Zip fixture folder ``name`` as GroupLens does: ``ml-100k/``, ``ml-100k/u.data``, ..."""
    src = FIXTURES / name
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}/", "")
        for f in sorted(src.iterdir()):
            zf.write(f, f"{name}/{f.name}")
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["ml-100k", "ml-1m"])
def served(request, tmp_path):
    """(name, file:// URL of a fixture zip, its sha256, cache root)."""
    name = request.param
    (tmp_path / "server").mkdir()
    zpath = make_zip(name, tmp_path / "server" / f"{name}.zip")
    return name, zpath.as_uri(), sha256(zpath), tmp_path / "cache"


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---------------------------------------------------------------------------------- constants


def test_release_table():
    assert set(ml.RELEASES) == {"ml-100k", "ml-1m"}
    for rel in ml.RELEASES.values():
        assert rel.url == f"https://files.grouplens.org/datasets/movielens/{rel.name}.zip"
        assert len(rel.sha256) == 64 and int(rel.sha256, 16) >= 0
        assert len(rel.md5) == 32 and int(rel.md5, 16) >= 0
    # md5 as published by GroupLens next to the zip
    assert ml.RELEASES["ml-100k"].md5 == "0e33842e24a9c977be4e0107933c0723"
    with pytest.raises(ValueError, match="unknown MovieLens release"):
        ml.release("ml-25m")


def test_default_location_is_in_the_course_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("M6REC_CACHE", str(tmp_path))
    assert ml.zip_path("ml-100k") == tmp_path / "movielens" / "ml-100k.zip"
    assert ml.folder_path("ml-1m", tmp_path / "x") == tmp_path / "x" / "ml-1m"


# ---------------------------------------------------------------------------------- parsers


def test_parse_ml100k():
    data = ml.read_movielens_folder(FIXTURES / "ml-100k", "ml-100k")
    inter, items = data
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(inter) == 10
    assert inter["rating"].dtype == "int64" and inter["user_id"].dtype == "int64"
    assert pd.api.types.is_datetime64_any_dtype(inter["timestamp"])
    first = inter.iloc[0]  # user 1's earliest rating: item 3 at 874965706
    assert (first.user_id, first.item_id, first.rating) == (1, 3, 4)
    assert first.timestamp == pd.Timestamp(874965706, unit="s")
    assert inter.groupby("user_id")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    assert list(inter["user_id"]) == sorted(inter["user_id"])

    assert list(items.columns) == ["item_id", "title", "genres"]
    by_id = items.set_index("item_id")
    assert by_id.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert by_id.loc[3, "title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert by_id.loc[4, "title"] == "unknown" and by_id.loc[4, "genres"] == "unknown"
    assert by_id.loc[5, "title"].startswith("Cité")


def test_parse_ml1m():
    inter, items = ml.read_movielens_folder(FIXTURES / "ml-1m", "ml-1m")
    assert len(inter) == 8
    assert inter.iloc[0].tolist()[:3] == [1, 1, 5]
    assert inter.iloc[0]["timestamp"] == pd.Timestamp(978300760, unit="s")
    by_id = items.set_index("item_id")
    assert by_id.loc[2, "genres"] == "Adventure|Children's|Fantasy"
    assert by_id.loc[3, "title"] == "Misérables, Les (1995)"
    assert items["item_id"].dtype == "int64"


def test_parsers_reject_wrong_formats(tmp_path):
    bad = tmp_path / "u.data"
    bad.write_text("1\t2\t3\n")
    with pytest.raises(DataError, match="expected 4 columns"):
        ml.read_ml100k_ratings(bad)
    bad.write_text("1\tx\t3\t4\n")
    with pytest.raises(DataError, match="integer columns"):
        ml.read_ml100k_ratings(bad)
    movies = tmp_path / "movies.dat"
    movies.write_text("1,Toy Story,Comedy\n")
    with pytest.raises(DataError, match="line 1"):
        ml.read_ml1m_movies(movies)
    item = tmp_path / "u.item"
    item.write_text("1|Toy Story|01-Jan-1995||url|0|1\n")
    with pytest.raises(DataError, match="24"):
        ml.read_ml100k_items(item)


def test_unknown_items_in_ratings_are_reported(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.item").write_bytes((FIXTURES / "ml-100k" / "u.item").read_bytes())
    (folder / "u.data").write_text("1\t99\t5\t874965758\n")
    with pytest.raises(DataError, match="missing from the item file"):
        ml.read_movielens_folder(folder, "ml-100k")


# ---------------------------------------------------------------------------------- download


def test_download_verify_extract_load(served):
    name, url, digest, root = served
    path = ml.download_movielens(name, root, url=url, sha256=digest, progress=False)
    assert path == root / f"{name}.zip" and sha256(path) == digest
    assert leftovers(root) == [f"{name}.zip"]  # no temporary file left behind
    data = ml.load_movielens(name, root, sha256=digest)
    expected = ml.read_movielens_folder(FIXTURES / name, name)
    pd.testing.assert_frame_equal(data.interactions, expected.interactions)
    pd.testing.assert_frame_equal(data.items, expected.items)
    assert leftovers(root) == [name, f"{name}.zip"]
    # a second call reuses the cache: no opener is even asked
    def no_network(url, timeout):
        raise AssertionError("should not download again")
    ml.download_movielens(name, root, url=url, sha256=digest, opener=no_network, progress=False)
    ml.load_movielens(name, root, download=True, opener=no_network)


def test_nothing_is_downloaded_without_download_true(tmp_path):
    with pytest.raises(DataError) as info:
        ml.load_movielens("ml-100k", tmp_path)
    msg = str(info.value)
    assert "download=True" in msg and "https://files.grouplens.org" in msg
    assert str(tmp_path / "ml-100k.zip") in msg and "redistribution" in msg
    assert leftovers(tmp_path) == []


def test_the_official_checksums_are_checked(tmp_path):
    """A zip that is not the published one fails the built-in sha256/md5 and leaves nothing."""
    zpath = make_zip("ml-100k", tmp_path / "fake.zip")
    root = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        ml.download_movielens("ml-100k", root, url=zpath.as_uri(), progress=False)
    msg = str(info.value)
    assert "not the published ml-100k.zip" in msg and "It was deleted" in msg
    assert ml.RELEASES["ml-100k"].sha256 in msg and sha256(zpath) in msg
    assert leftovers(root) == []


def test_checksum_mismatch_with_given_sha256(served):
    name, url, digest, root = served
    with pytest.raises(DataError, match="sha256 is .* expected 0{64}"):
        ml.download_movielens(name, root, url=url, sha256="0" * 64, progress=False)
    assert leftovers(root) == []


def test_damaged_cached_zip_is_deleted_and_reported(served):
    name, url, digest, root = served
    ml.download_movielens(name, root, url=url, sha256=digest, progress=False)
    zpath = root / f"{name}.zip"
    zpath.write_bytes(zpath.read_bytes()[:-10])  # truncated
    with pytest.raises(DataError, match="It was deleted"):
        ml.load_movielens(name, root, sha256=digest)
    assert not zpath.exists()
    # with download=True a damaged zip is replaced by a good one
    zpath.write_bytes(b"garbage")
    data = ml.load_movielens(name, root, download=True, url=url, sha256=digest, progress=False)
    assert len(data.interactions) > 0 and sha256(zpath) == digest


def test_a_download_that_breaks_off_leaves_no_file(tmp_path):
    zpath = make_zip("ml-100k", tmp_path / "ml-100k.zip")
    payload = zpath.read_bytes()

    class BrokenResponse(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def read(self, n=-1):
            if self.tell() > 100:
                raise ConnectionResetError("connection reset by peer")
            return super().read(min(n, 64))

    root = tmp_path / "cache"
    with pytest.raises(DataError, match="could not download .*connection reset by peer"):
        ml.download_movielens(
            "ml-100k", root, sha256=sha256(zpath), progress=False,
            opener=lambda url, timeout: BrokenResponse(payload),
        )
    assert leftovers(root) == []


def test_a_monkeypatched_opener_serves_the_bytes(tmp_path):
    zpath = make_zip("ml-1m", tmp_path / "ml-1m.zip")
    seen = []

    def opener(url, timeout):
        seen.append((url, timeout))
        return io.BytesIO(zpath.read_bytes())

    root = tmp_path / "cache"
    out = ml.download_movielens(
        "ml-1m", root, sha256=sha256(zpath), opener=opener, timeout=5, progress=False
    )
    assert seen == [(ml.RELEASES["ml-1m"].url, 5)]
    assert out.read_bytes() == zpath.read_bytes()


def _offline_message_ok(msg: str, url: str, root: Path) -> None:
    assert f"could not download {url}" in msg
    assert "You are offline or the server is unreachable" in msg
    assert "download the zip by hand from https://files.grouplens.org/datasets/movielens/" in msg
    assert str(root / "ml-100k.zip") in msg


def test_offline_error_from_the_opener(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    with pytest.raises(DataError) as info:
        ml.load_movielens("ml-100k", tmp_path, download=True, opener=offline, progress=False)
    _offline_message_ok(str(info.value), ml.RELEASES["ml-100k"].url, tmp_path)
    assert "name resolution" in str(info.value)
    assert leftovers(tmp_path) == []


def test_offline_error_from_a_refused_loopback_connection(tmp_path):
    with socket.socket() as s:  # find a free loopback port, then close it: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-100k.zip"
    with pytest.raises(DataError) as info:
        ml.download_movielens("ml-100k", tmp_path, url=url, timeout=5, progress=False)
    _offline_message_ok(str(info.value), url, tmp_path)
    assert leftovers(tmp_path) == []


def test_offline_error_for_the_real_url_under_the_network_guard(tmp_path):
    """With the test run's network guard, the real GroupLens URL fails fast and clearly."""
    if not getattr(socket.socket.connect, "m6rec_netguard", False):
        pytest.skip("the network guard is not installed; refusing to contact GroupLens")
    with pytest.raises(DataError) as info:
        ml.download_movielens("ml-100k", tmp_path, timeout=5, progress=False)
    _offline_message_ok(str(info.value), ml.RELEASES["ml-100k"].url, tmp_path)
    assert "network access is disabled" in str(info.value)
    assert leftovers(tmp_path) == []


def test_extraction_is_atomic_and_checks_the_layout(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    # a zip without the expected folder is refused, and no folder appears
    with zipfile.ZipFile(root / "ml-100k.zip", "w") as zf:
        zf.writestr("u.data", "1\t1\t5\t874965758\n")
    with pytest.raises(DataError, match="does not contain"):
        ml.extract_movielens("ml-100k", root)
    assert leftovers(root) == ["ml-100k.zip"]
    (root / "ml-100k.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        ml.extract_movielens("ml-100k", root)
    assert leftovers(root) == ["ml-100k.zip"]
    # an incomplete folder (e.g. left by hand) is replaced by a full extraction
    make_zip("ml-100k", root / "ml-100k.zip")
    (root / "ml-100k").mkdir()
    (root / "ml-100k" / "u.data").write_text("")
    folder = ml.extract_movielens("ml-100k", root)
    assert sorted(p.name for p in folder.iterdir()) == ["README", "u.data", "u.genre", "u.item"]
    assert leftovers(root) == ["ml-100k", "ml-100k.zip"]


def test_folder_argument_reads_an_extracted_copy_anywhere(tmp_path):
    inter, items = ml.load_movielens("ml-1m", folder=FIXTURES / "ml-1m")
    assert len(items) == 4
    with pytest.raises(DataError, match="not an extracted ml-100k folder"):
        ml.load_movielens("ml-100k", folder=tmp_path)


def test_messages_show_paths_inside_the_course_relative_to_it():
    from m6rec_lib.config import REPO_ROOT

    msg = ml._missing_message(ml.release("ml-100k"), REPO_ROOT / "cache" / "movielens" / "ml-100k.zip")
    assert "looked for cache/movielens/ml-100k.zip (in the course's folder)" in msg
    assert str(REPO_ROOT) not in msg
