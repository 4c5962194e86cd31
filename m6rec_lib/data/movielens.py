"""MovieLens-100K and MovieLens-1M: checksummed download, cache, and parsers for the upstream files.

MovieLens is *optional* in this course (the appendix "bring your own data"). Its licence forbids
redistribution, so the course never ships or commits it: a learner downloads it on their own
machine, and only when they ask for it (``download=True``). Everything else in the course runs
without it.

Where things go (``root`` defaults to ``m6rec_lib.config.cache_dir() / "movielens"``)::

    root/ml-100k.zip        the zip as published by GroupLens (checksum verified)
    root/ml-100k/u.data     the extracted folder, exactly as inside the zip

Typical use::

    from m6rec_lib.data.movielens import load_movielens
    ml = load_movielens("ml-100k", download=True)     # downloads about 5 MB once
    ml.interactions   # user_id, item_id, rating, timestamp (datetime64)
    ml.items          # item_id, title, genres ("Animation|Children's|Comedy")

    movielens_table("ml-100k")   # the same as a table for m6rec_lib.byod: user, item, time, text, row

Checksums
---------
Each release has two independent checksums, both verified after a download:

- ``md5``: published by GroupLens next to each zip (``ml-100k.zip.md5`` on
  files.grouplens.org, and on the dataset's web page);
- ``sha256`` and the size in bytes: as recorded by TensorFlow Datasets for the same URLs
  (``tensorflow_datasets/url_checksums/movielens.txt``).

They could not be recomputed where this module was written (no network there). If GroupLens ever
re-publishes a zip, the download fails with a checksum error that shows the new value; check it
against the GroupLens page and pass ``sha256=...`` to :func:`download_movielens` (or update
``RELEASES``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, NamedTuple

import numpy as np
import pandas as pd

from m6rec_lib import config
from m6rec_lib.atomic import atomic_path
from m6rec_lib.data.retail import DataError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"
LICENCE_NOTE = (
    "MovieLens is not shipped with the course: its licence (see the README inside the zip) "
    "forbids redistribution."
)

ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of ``u.item``, in file order (as listed in ``u.genre``)."""


@dataclass(frozen=True)
class MovieLensRelease:
    """One published MovieLens zip: where it is, how to check it, what is inside."""

    name: str
    url: str
    size: int
    sha256: str
    md5: str
    files: tuple[str, ...]
    """The files the loaders need, relative to the folder ``name`` inside the zip."""

    @property
    def checksums(self) -> dict[str, str]:
        return {"sha256": self.sha256, "md5": self.md5}


RELEASES: dict[str, MovieLensRelease] = {
    "ml-100k": MovieLensRelease(
        name="ml-100k",
        url=GROUPLENS_URL + "ml-100k.zip",
        size=4_924_029,
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        md5="0e33842e24a9c977be4e0107933c0723",
        files=("u.data", "u.item"),
    ),
    "ml-1m": MovieLensRelease(
        name="ml-1m",
        url=GROUPLENS_URL + "ml-1m.zip",
        size=5_917_549,
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        md5="c4d9eecfca2ab87c1945afe126590906",
        files=("ratings.dat", "movies.dat"),
    ),
}


class MovieLens(NamedTuple):
    """A loaded MovieLens release; unpack it as ``interactions, items = load_movielens(...)``.

    interactions : DataFrame, one row per rating
        ``user_id`` (int64), ``item_id`` (int64), ``rating`` (int64, 1..5), ``timestamp``
        (datetime64, UTC without time zone), sorted by user, then time (file order within ties).
    items : DataFrame, one row per movie
        ``item_id`` (int64), ``title`` (str, with the year, e.g. "Toy Story (1995)"), ``genres``
        (str, genre names joined by ``|``; empty when a movie has none).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame


# --------------------------------------------------------------------------------------------
# locations


def release(name: str) -> MovieLensRelease:
    """The :class:`MovieLensRelease` called ``name`` (``"ml-100k"`` or ``"ml-1m"``)."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(
            f"unknown MovieLens release {name!r}; choose one of {sorted(RELEASES)}"
        ) from None


def movielens_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the MovieLens zips and extracted folders (created on demand)."""
    path = Path(root) if root is not None else config.cache_dir() / "movielens"
    path.mkdir(parents=True, exist_ok=True)
    return path


def zip_path(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where the zip of release ``name`` is kept, e.g. ``<root>/ml-100k.zip``."""
    return movielens_dir(root) / f"{release(name).name}.zip"


def folder_path(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where release ``name`` is extracted, e.g. ``<root>/ml-100k``."""
    return movielens_dir(root) / release(name).name


def _is_complete(folder: Path, rel: MovieLensRelease) -> bool:
    return all((folder / f).is_file() for f in rel.files)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (``cache/movielens/ml-100k.zip``),
    else in full: messages say where a file goes without printing where the course was installed."""
    resolved, root = Path(path).resolve(), config.REPO_ROOT.resolve()
    if resolved.is_relative_to(root):
        return f"{resolved.relative_to(root)} (in the course's folder)"
    return str(path)


def _missing_message(rel: MovieLensRelease, target: Path) -> str:
    target = shown_path(target)
    return (
        f"MovieLens {rel.name} is not on this machine (looked for {target}). {LICENCE_NOTE} "
        f"To get it, call load_movielens({rel.name!r}, download=True) (about "
        f"{rel.size / 1e6:.0f} MB from {rel.url}), or download the zip by hand from {rel.url} "
        f"and put it at {target}."
    )


# --------------------------------------------------------------------------------------------
# checksums and download


def file_checksums(path: str | os.PathLike[str], algorithms=("sha256", "md5")) -> dict[str, str]:
    """Hex digests of a file, e.g. ``{"sha256": "...", "md5": "..."}`` (read in 1 MiB chunks)."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            for h in hashes.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashes.items()}


def _mismatches(actual: dict[str, str], expected: dict[str, str]) -> list[str]:
    return [
        f"{a} is {actual[a]}, expected {expected[a].lower()}"
        for a in expected
        if actual[a] != expected[a].lower()
    ]


def verify_zip(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    sha256: str | None = None,
    delete_bad: bool = True,
) -> Path:
    """Check the cached zip of ``name`` against its checksums; return its path.

    A zip that does not match is deleted (unless ``delete_bad=False``) and a ``DataError`` says
    so. ``sha256`` replaces the built-in checksums (then only sha256 is checked).
    """
    rel = release(name)
    path = zip_path(name, root)
    if not path.is_file():
        raise DataError(_missing_message(rel, path))
    expected = {"sha256": sha256} if sha256 else rel.checksums
    problems = _mismatches(file_checksums(path, tuple(expected)), expected)
    if problems:
        fate = "It was deleted" if delete_bad else "It was left in place"
        if delete_bad:
            path.unlink(missing_ok=True)
        raise DataError(
            f"{path} is not the published {rel.name}.zip: {'; '.join(problems)}. {fate}; the file "
            f"was damaged or incomplete. Download it again with load_movielens({rel.name!r}, "
            f"download=True), or by hand from {rel.url}."
        )
    return path


Opener = Callable[[str, float], IO[bytes]]


def _urlopen(url: str, timeout: float) -> IO[bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": "m6rec-course"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - https or file URL


def download_movielens(
    name: str = "ml-100k",
    root: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
    opener: Opener | None = None,
) -> Path:
    """Download the zip of release ``name`` into ``root``, verify it, and return its path.

    The zip is streamed to a temporary file next to its final place, checked (sha256 and the
    md5 GroupLens publishes), and only then renamed: an interrupted or wrong download leaves no
    file behind. A zip already there and intact is reused unless ``force``; a damaged one is
    deleted and downloaded again.

    Parameters
    ----------
    url
        Another source for the same zip (a mirror, or a ``file://`` URL); defaults to GroupLens.
    sha256
        The expected sha256 when it differs from the built-in one (then only sha256 is checked).
    opener
        ``opener(url, timeout) -> binary file-like`` (default: ``urllib.request.urlopen``); lets
        tests serve bytes without a network.
    """
    rel = release(name)
    target = zip_path(name, root)
    expected = {"sha256": sha256} if sha256 else rel.checksums
    if target.is_file() and not force:
        if not _mismatches(file_checksums(target, tuple(expected)), expected):
            return target
        target.unlink()  # damaged: download it again
    source = url or rel.url
    opener = opener or _urlopen

    from tqdm.auto import tqdm

    def network_error(exc: BaseException) -> Exception:
        reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        return DataError(
            f"could not download {source}: {reason}. You are offline or the server is "
            f"unreachable; download the zip by hand from {rel.url} and put it at {shown_path(target)}."
        )

    hashes = {a: hashlib.new(a) for a in expected}
    with atomic_path(target) as tmp:
        try:
            response = opener(source, timeout)
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise network_error(exc) from exc
        length = getattr(response, "headers", None)
        length = length.get("Content-Length") if length is not None else None
        bar = tqdm(
            total=int(length) if length else None,
            unit="B",
            unit_scale=True,
            desc=f"{rel.name}.zip",
            disable=not progress,
        )
        with response, bar, open(tmp, "wb") as out:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (OSError, http.client.HTTPException) as exc:  # broke off midway
                    raise network_error(exc) from exc
                if not chunk:
                    break
                out.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
                bar.update(len(chunk))
        problems = _mismatches({a: h.hexdigest() for a, h in hashes.items()}, expected)
        if problems:
            raise DataError(
                f"the file downloaded from {source} is not the published {rel.name}.zip: "
                f"{'; '.join(problems)}. It was deleted. Try again later, or download it by hand "
                f"from {rel.url} and put it at {shown_path(target)}."
            )
    return target


def extract_movielens(name: str = "ml-100k", root: str | os.PathLike[str] | None = None) -> Path:
    """Extract the cached zip of ``name`` (atomically) and return the extracted folder.

    The zip is unpacked into a temporary folder next to the target, checked for the files the
    loaders need, then renamed: a crash never leaves a half-extracted folder that looks complete.
    """
    rel = release(name)
    folder = folder_path(name, root)
    if _is_complete(folder, rel):
        return folder
    zpath = zip_path(name, root)
    if not zpath.is_file():
        raise DataError(_missing_message(rel, zpath))
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{rel.name}.", suffix=".tmp", dir=folder.parent))
    try:
        try:
            with zipfile.ZipFile(zpath) as zf:
                members = [m for m in zf.namelist() if PurePosixPath(m).parts[:1] == (rel.name,)]
                unsafe = [m for m in members if m.startswith("/") or ".." in PurePosixPath(m).parts]
                if unsafe:
                    raise DataError(f"{zpath} has unsafe member names {unsafe[:3]}; delete it.")
                zf.extractall(tmpdir, members=members)
        except zipfile.BadZipFile as exc:
            raise DataError(
                f"{zpath} is not a valid zip ({exc}); delete it and download it again."
            ) from exc
        extracted = tmpdir / rel.name
        if not _is_complete(extracted, rel):
            raise DataError(
                f"{zpath} does not contain {[f'{rel.name}/{f}' for f in rel.files]}; it is not "
                f"the {rel.name} zip. Delete it and download it again from {rel.url}."
            )
        if folder.exists():  # an incomplete folder left by hand: replace it
            shutil.rmtree(folder)
        try:
            os.replace(extracted, folder)
        except OSError:
            if not _is_complete(folder, rel):  # another process extracted it meanwhile?
                raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return folder


def ensure_movielens(
    name: str = "ml-100k",
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    **download_kwargs,
) -> Path:
    """Return the extracted folder of ``name``, extracting the cached zip if needed.

    Nothing is downloaded unless ``download=True``; without it a missing zip raises a
    ``DataError`` that says how to get it. ``download_kwargs`` go to :func:`download_movielens`.
    """
    rel = release(name)
    folder = folder_path(name, root)
    if _is_complete(folder, rel):
        return folder
    zpath = zip_path(name, root)
    if zpath.is_file():
        try:
            verify_zip(name, root, sha256=download_kwargs.get("sha256"))
        except Exception:
            if not download:
                raise
    if not zpath.is_file():
        if not download:
            raise DataError(_missing_message(rel, zpath))
        download_movielens(name, root, **download_kwargs)
    return extract_movielens(name, root)


# --------------------------------------------------------------------------------------------
# parsers for the upstream formats


def _read_numeric_table(path, sep: str, columns: list[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep=sep, header=None, dtype="int64", engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"{path}: expected {len(columns)} integer columns separated by {sep!r} "
            f"({', '.join(columns)}): {exc}"
        ) from exc
    if df.shape[1] != len(columns):
        raise DataError(
            f"{path}: expected {len(columns)} columns ({', '.join(columns)}), found {df.shape[1]}"
        )
    df.columns = columns
    return df


def _finish_ratings(df: pd.DataFrame) -> pd.DataFrame:
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s")
    return df.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)


def read_ml100k_ratings(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse ml-100k ``u.data``: ``user id \\t item id \\t rating \\t unix timestamp``."""
    df = _read_numeric_table(path, "\t", ["user_id", "item_id", "rating", "timestamp"])
    return _finish_ratings(df)


def read_ml100k_items(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse ml-100k ``u.item`` (latin-1, ``|``-separated).

    Fields: movie id | title | release date | video release date | IMDb URL | 19 genre flags
    (0/1, in the order of :data:`ML100K_GENRES`).
    """
    n_fields = 5 + len(ML100K_GENRES)
    try:
        raw = pd.read_csv(
            path, sep="|", header=None, dtype=str, encoding="latin-1", keep_default_na=False
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a u.item file ({exc})") from exc
    if raw.shape[1] != n_fields:
        raise DataError(f"{path}: expected {n_fields} '|'-separated fields, found {raw.shape[1]}")
    flags = raw.iloc[:, 5:]
    if not flags.isin(["0", "1"]).all().all():
        raise DataError(f"{path}: the 19 genre flags must be 0 or 1")
    genres = [
        "|".join(g for g, f in zip(ML100K_GENRES, row) if f == "1")
        for row in flags.itertuples(index=False)
    ]
    try:
        item_id = raw[0].astype("int64")
    except ValueError as exc:
        raise DataError(f"{path}: movie ids must be integers ({exc})") from exc
    return pd.DataFrame({"item_id": item_id, "title": raw[1].str.strip(), "genres": genres})


def read_ml1m_ratings(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse ml-1m ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``."""
    from io import StringIO

    with open(path, encoding="latin-1") as fh:
        text = fh.read().replace("::", "\t")  # only digits around: safe, and the C parser is fast
    df = _read_numeric_table(StringIO(text), "\t", ["user_id", "item_id", "rating", "timestamp"])
    return _finish_ratings(df)


def read_ml1m_movies(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse ml-1m ``movies.dat`` (latin-1): ``MovieID::Title::Genres``, genres ``|``-separated."""
    rows = []
    with open(path, encoding="latin-1") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            head, sep, rest = line.partition("::")
            title, sep2, genres = rest.rpartition("::")
            if not (sep and sep2 and head.strip().isdigit()):
                raise DataError(
                    f"{path}, line {lineno}: expected 'MovieID::Title::Genres', got {line!r}"
                )
            rows.append((int(head), title.strip(), genres.strip()))
    items = pd.DataFrame(rows, columns=["item_id", "title", "genres"])
    items["item_id"] = items["item_id"].astype("int64")
    return items


def read_movielens_folder(folder: str | os.PathLike[str], name: str = "ml-100k") -> MovieLens:
    """Parse an extracted MovieLens folder (as inside the zip) into a :class:`MovieLens`."""
    rel = release(name)
    folder = Path(folder)
    if not _is_complete(folder, rel):
        raise DataError(
            f"{folder} is not an extracted {rel.name} folder: it needs {list(rel.files)}."
        )
    if name == "ml-100k":
        interactions = read_ml100k_ratings(folder / "u.data")
        items = read_ml100k_items(folder / "u.item")
    else:
        interactions = read_ml1m_ratings(folder / "ratings.dat")
        items = read_ml1m_movies(folder / "movies.dat")
    unknown = set(interactions["item_id"].unique()) - set(items["item_id"])
    if unknown:
        raise DataError(
            f"{folder}: {len(unknown)} rated item ids are missing from the item file "
            f"(e.g. {sorted(unknown)[:5]}); the folder is damaged. Delete it and extract again."
        )
    return MovieLens(interactions=interactions, items=items)


def load_movielens(
    name: str = "ml-100k",
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    folder: str | os.PathLike[str] | None = None,
    **download_kwargs,
) -> MovieLens:
    """Load MovieLens ``name`` (``"ml-100k"`` or ``"ml-1m"``) as interactions and items.

    Uses the cache under ``root`` (default ``cache_dir()/movielens``); downloads only when
    ``download=True``. ``folder`` reads an already extracted folder from anywhere instead.
    See :class:`MovieLens` for the columns.
    """
    if folder is None:
        folder = ensure_movielens(name, root, download=download, **download_kwargs)
    return read_movielens_folder(folder, name)


def movielens_table(
    name: str = "ml-100k",
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    folder: str | os.PathLike[str] | None = None,
    **download_kwargs,
) -> pd.DataFrame:
    """MovieLens as a table of interactions for :mod:`m6rec_lib.byod`: ``user, item, time, text, row``.

    Every rating counts as an interaction (implicit feedback: "watched and rated"), whatever its
    value. ``text`` is the title with its genres ("Toy Story (1995) | Animation|Children's|Comedy");
    ``row`` keeps the file's order among ratings of one user with the same timestamp. Same arguments
    as :func:`load_movielens` (nothing is downloaded without ``download=True``).
    """
    ml = load_movielens(name, root, download=download, folder=folder, **download_kwargs)
    items = ml.items.set_index("item_id")
    text = items["title"] + " | " + items["genres"]
    r = ml.interactions
    table = pd.DataFrame({
        "user": r["user_id"].astype(str).to_numpy(),
        "item": r["item_id"].astype(str).to_numpy(),
        "time": r["timestamp"].to_numpy(dtype="datetime64[ns]"),
        "text": text.reindex(r["item_id"]).to_numpy(dtype=object),
    })
    table["row"] = np.arange(len(table), dtype=np.int64)
    return table.sort_values(["user", "time", "row"], kind="stable").reset_index(drop=True)
