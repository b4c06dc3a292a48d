"""Files of the ``skiic cluster`` command: samples and labels read, output checked."""

from __future__ import annotations

import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DATA_SUFFIXES", "InputError", "out_path", "read_data", "read_labels"]

DATA_SUFFIXES = (".npy", ".npz", ".csv", ".txt")


# What reading a damaged .npz (or one of its compressed members) raises.
_NPZ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


class InputError(Exception):
    """A problem with the command's input, reported as one line."""


def read_data(path: str, *, key: str | None = None, labels: bool = True):
    """Read samples from a .npy, .npz or .csv/.txt file.

    Returns ``(X, y, source)``: ``y`` is the npz array ``y`` when the file has
    one next to the data and ``labels`` asks for it (else ``None``),
    ``source`` names what was read.
    ``X`` is a non-empty numeric array of 2 to 4 dimensions; its values (NaN,
    infinity) and its fit to ``--input-shape`` are left to the estimators.
    """
    file = _existing(path)
    suffix = file.suffix.lower()
    if key is not None and suffix != ".npz":
        raise InputError(f"--key applies to .npz files only; {path} is {suffix}.")
    if suffix == ".npy":
        return _as_samples(_load_npy(file), path), None, path
    if suffix == ".npz":
        with _open_npz(file) as archive:
            names = list(archive.files)
            if key is None:
                key = _default_key(names, path)
            elif key not in names:
                raise InputError(
                    f"{path} has no array {key!r}; it holds {_listing(names)}."
                )
            X = _member(archive, key, file)
            y = None
            if labels and "y" in names and key != "y":
                y = _as_labels(_member(archive, "y", file), f"{path} (array 'y')")
        return _as_samples(X, path), y, f"{path} (array {key!r})"
    if suffix in (".csv", ".txt"):
        data, header, index = _load_text(file)
        source = path
        if header:
            source = f"{path} (its first line skipped as a header)"
        if index:
            source = source[:-1] + ", its first column as a row index)"
        return _as_samples(data, path), None, source
    raise InputError(
        f"cannot read {path}: unsupported file type {suffix or '(none)'!r}; "
        f"use {', '.join(DATA_SUFFIXES)}."
    )


def read_labels(spec: str, data_path: str, n_samples: int | None = None):
    """Labels from a file, or from an array of the data's .npz named ``spec``.

    A text file may hold numbers or class names, one per line (a first line
    of a column name above numbers is skipped; above names, where the file
    has one line more than the ``n_samples`` of the data)."""
    if Path(data_path).suffix.lower() == ".npz" and not Path(spec).exists():
        with _open_npz(_existing(data_path)) as archive:
            if spec in archive.files:
                labels = _member(archive, spec, Path(data_path))
                return _as_labels(labels, f"{data_path} (array {spec!r})")
            raise InputError(
                f"--labels {spec}: no such file, nor an array of {data_path} "
                f"(it holds {_listing(archive.files)})."
            )
    file = _existing(spec)
    suffix = file.suffix.lower()
    if suffix == ".npy":
        labels = _load_npy(file)
    elif suffix in (".csv", ".txt"):
        labels = _load_label_text(file, n_samples)
    elif suffix == ".npz":
        with _open_npz(file) as archive:
            names = list(archive.files)
            key = "y" if "y" in names else _default_key(names, spec)
            labels = _member(archive, key, file)
    else:
        raise InputError(
            f"cannot read labels from {spec}: unsupported file type {suffix!r}; "
            "use .npy, .npz or .csv."
        )
    return _as_labels(labels, spec)


def out_path(out: str | None, *inputs: str) -> Path | None:
    """The file ``np.save`` will write for ``--out``, checked before any training.

    The file must not be one of the ``inputs`` (the data or labels files) and
    must be writable: an existing file is opened for appending, a new one is
    created and removed again, so that a fit of minutes does not end in an
    error it could have given at once.
    """
    if out is None:
        return None
    path = Path(out)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")  # what np.save would write
    if not path.parent.is_dir():
        raise InputError(f"cannot write {out}: no directory {path.parent}.")
    for given in inputs:
        if given is not None and path.resolve() == Path(given).resolve():
            raise InputError(
                f"--out {out} is the input file {given}: writing the labels there "
                "would overwrite it; choose another file."
            )
    if path.is_dir():
        raise InputError(f"cannot write {out}: {path} is a directory.")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}.") from None
    if not existed:
        path.unlink()
    return path


def _existing(path: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise InputError(f"no such file: {path}")
    if file.is_dir():
        raise InputError(f"{path} is a directory, not a data file.")
    return file


def _load_npy(file: Path):
    _check_magic(file, b"\x93NUMPY", "a NumPy .npy file")
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        hint = ""
        if "allow_pickle" in str(exc):
            # Loading pickles would run code from the file: never done.
            hint = (
                " (skiic does not load pickles; save numbers with a numeric "
                "dtype, class names with a string one: np.save(path, a.astype(str)))"
            )
        raise InputError(f"cannot read {file} as .npy: {exc}{hint}") from None


def _open_npz(file: Path):
    _check_magic(file, b"PK", "a NumPy .npz (zip) file")
    try:
        return np.load(file, allow_pickle=False)
    except _NPZ_ERRORS as exc:
        raise InputError(f"cannot read {file} as .npz: {exc}") from None


def _member(archive, key: str, file: Path):
    """The array ``key`` of an open .npz, read now (a damaged member fails here)."""
    try:
        return archive[key]
    except _NPZ_ERRORS as exc:
        raise InputError(f"cannot read array {key!r} of {file}: {exc}") from None


def _check_magic(file: Path, magic: bytes, what: str) -> None:
    """Refuse a file that does not start as ``what`` does, before numpy reads it."""
    try:
        with open(file, "rb") as handle:
            start = handle.read(len(magic))
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from None
    if start != magic:
        raise InputError(f"cannot read {file}: it is not {what}.")


def _load_text(file: Path):
    """Numbers separated by semicolons, commas or whitespace, with an
    optional header: (data, whether a header was skipped, whether a first
    column was dropped as pandas' row index)."""
    try:
        with open(file, encoding="utf-8") as handle:
            first, second = handle.readline(), handle.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {file} as text: {exc}") from None
    delimiter = _separator(first)
    raw = [field.strip() for field in first.split(delimiter)]
    fields = [field for field in raw if field]
    # Column names: no number among them (a comment line such as NumPy's
    # "# names" included), or the column numbers 0, 1, 2, ... that pandas
    # writes for a frame without names (``to_csv(index=False)``; at least
    # three, as a first sample of two binary features reads "0,1").
    header = not any(_is_number(field) for field in fields) or (
        delimiter == ","
        and len(raw) == len(fields) >= 3
        and fields == [str(i) for i in range(len(fields))]
    )
    # pandas' to_csv() with its default index=True: an empty first field over
    # the row labels, then the column names or numbers.
    index = (
        delimiter == ","
        and len(raw) >= 2
        and raw[0] == ""
        and len(fields) == len(raw) - 1
        and (header or fields == [str(i) for i in range(len(fields))])
    )
    header = header or index
    if header and second.strip():
        # The samples say how they are separated, whatever the header uses.
        delimiter = _separator(second)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            data = np.loadtxt(
                file,
                delimiter=delimiter,
                skiprows=int(header),
                ndmin=2,
                usecols=range(1, len(raw)) if index else None,
            )
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read numbers from {file}: {exc}") from None
    if data.size == 0:
        raise InputError(f"{file} holds no data.")
    return data, header, index


def _load_label_text(file: Path, n_samples: int | None):
    """One label a line, numbers or class names (:func:`read_labels`); text
    of several columns goes to :func:`_load_text` (numbers only)."""
    try:
        with open(file, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {file} as text: {exc}") from None
    while lines and not lines[-1]:
        lines.pop()
    if any(_separator(line) or _numbers_apart(line) for line in lines):
        return _load_text(file)[0]
    if not lines:
        raise InputError(f"{file} holds no data.")
    if "" in lines:
        raise InputError(f"{file} has an empty line among its labels.")
    numbers = [_is_number(line) for line in lines]
    if all(numbers[1:]) and len(lines) > 1:
        # Numbers, perhaps below a column name.
        return np.array(lines[1:] if not numbers[0] else lines, dtype=np.float64)
    if n_samples is not None and len(lines) == n_samples + 1:
        lines = lines[1:]  # a column name above class names
    return np.array(lines)


def _separator(line: str) -> str | None:
    """The separator of a line: a semicolon (as spreadsheets write a .csv in
    locales whose decimal mark is a comma), else a comma, else whitespace."""
    return ";" if ";" in line else "," if "," in line else None


def _numbers_apart(line: str) -> bool:
    """Whether ``line`` holds several numbers apart (columns, not a name)."""
    fields = line.split()
    return len(fields) > 1 and all(_is_number(field) for field in fields)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _default_key(names: list[str], path: str) -> str:
    if len(names) == 1:
        return names[0]
    if "X" in names:
        return "X"
    raise InputError(
        f"{path} holds {_listing(names)}; choose the data with --key NAME."
    )


def _as_samples(X, name: str):
    """Refuse what is not an array of samples at all, before a model is built.

    The estimators would take numeric strings as numbers, and answer a 1-D
    array or an empty stack of images with a message about reshaping.
    """
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold numbers; got dtype {X.dtype}.")
    if X.ndim not in (2, 3, 4):
        raise InputError(
            f"{name} holds an array of shape {X.shape}; expected 2-D "
            "(samples, features), 3-D (samples, H, W) or 4-D (samples, C, H, W)."
        )
    if X.size == 0:
        raise InputError(f"{name} holds no data (shape {X.shape}).")
    return X


def _as_labels(labels, source: str):
    labels = np.asarray(labels)
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.ravel()
    if labels.ndim != 1:
        raise InputError(
            f"labels in {source} must be one column; got shape {labels.shape}."
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise InputError(f"labels in {source} contain NaN or infinity.")
    return labels


def _listing(names) -> str:
    return "arrays " + ", ".join(repr(name) for name in names) if names else "nothing"
