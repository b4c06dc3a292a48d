"""Tests of the ``skiic`` command line (``skiic._cli.main``), run in-process."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_blobs

from skiic._cli import main

FAST = ["--max-epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=60, centers=3, cluster_std=0.5, random_state=0)


@pytest.fixture
def files(tmp_path, blobs):
    X, y = blobs
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    return tmp_path


def run(capsys, *argv):
    """``main(argv)``: its status, stdout and stderr."""
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cluster_npy_with_labels_writes_labels(capsys, files, blobs):
    out = files / "labels.npy"
    status, stdout, stderr = run(
        capsys,
        "cluster", files / "X.npy", "--n-clusters", 3, "--labels", files / "y.npy",
        "--out", out, "--random-state", 1, *FAST,
    )  # fmt: skip
    assert status == 0, stderr
    labels = np.load(out)
    assert labels.shape == (60,) and labels.dtype.kind == "i"
    assert "60 samples, vectors of 2 features" in stdout
    assert "fitting IICClustering with 3 clusters" in stdout
    assert f"{np.unique(labels).size} clusters found" in stdout
    assert "NMI: " in stdout and "matched accuracy: " in stdout
    assert f"labels written to {out}" in stdout
    assert stderr == ""


@pytest.mark.parametrize(
    "method, name", [("deepcluster", "DeepClusterEstimator"), ("ae-kmeans", "KMeans")]
)
def test_cluster_npz_uses_its_labels_and_scores(capsys, files, blobs, method, name):
    status, stdout, stderr = run(
        capsys, "cluster", files / "data.npz", "-k", 3, "--method", method, *FAST
    )
    assert status == 0, stderr
    assert "(array 'X')" in stdout and "labels from" in stdout and name in stdout
    accuracy = float(stdout.split("matched accuracy: ")[1].split()[0])
    assert accuracy > 0.6  # three well separated blobs, even after 2 epochs


def test_cluster_csv_with_header_and_flat_images(capsys, tmp_path):
    X, y = load_digits(return_X_y=True)
    path = tmp_path / "digits.csv"
    header = ",".join(f"pixel{i}" for i in range(64))
    np.savetxt(path, X[:40], delimiter=",", header=header, comments="", fmt="%d")
    np.savetxt(tmp_path / "y.csv", y[:40], fmt="%d")
    out = tmp_path / "found"
    status, stdout, stderr = run(
        capsys,
        "cluster", path, "-k", 4, "--input-shape", "1,8,8", "--labels",
        tmp_path / "y.csv", "-o", out, "--max-epochs", 1, "--device", "cpu",
    )  # fmt: skip
    assert status == 0, stderr
    assert "40 samples, images of shape (1, 8, 8)" in stdout
    assert np.load(tmp_path / "found.npy").shape == (40,)  # np.save adds .npy


@pytest.mark.parametrize("header", ["digits", "# digits", "pixel values"])
def test_csv_header_need_not_use_the_samples_separator(capsys, tmp_path, header):
    """A header without commas over comma-separated samples (NumPy's savetxt
    writes "# header") is skipped, and the samples are read by their commas."""
    X, _ = make_blobs(n_samples=30, n_features=3, centers=2, random_state=0)
    path = tmp_path / "data.csv"
    np.savetxt(path, X, delimiter=",", header=header, comments="")
    status, stdout, stderr = run(capsys, "cluster", path, "-k", 2, *FAST)
    assert status == 0, stderr
    assert "(its first line skipped as a header): 30 samples, vectors of 3" in stdout


@pytest.mark.parametrize("names", ["a,b,c", "0,1,2"], ids=["named", "numbered"])
def test_csv_of_pandas_with_its_row_index(capsys, tmp_path, names):
    """pandas' to_csv() writes the row index as a first column under an empty
    name: dropped, not clustered as a feature (named columns read the index
    as data; numbered ones failed on the empty name)."""
    X, y = make_blobs(n_samples=60, n_features=3, centers=2, random_state=0)
    path = tmp_path / "frame.csv"
    indexed = np.column_stack([np.arange(len(X)) * 1000, X])
    np.savetxt(path, indexed, delimiter=",", header="," + names, comments="")
    np.save(tmp_path / "y.npy", y)
    status, stdout, stderr = run(
        capsys, "cluster", path, "-k", 2, "--labels", tmp_path / "y.npy", *FAST
    )
    assert status == 0, stderr
    assert "its first column as a row index): 60 samples, vectors of 3" in stdout
    assert "matched accuracy: 1.000" in stdout


@pytest.mark.parametrize("delimiter", [",", ";", "\t", " "])
def test_csv_separators_read_the_same_samples(capsys, tmp_path, delimiter):
    """Commas, semicolons (a spreadsheet's .csv in many locales), tabs and
    spaces separate the values alike."""
    X, _ = make_blobs(n_samples=30, n_features=3, centers=2, random_state=0)
    np.save(tmp_path / "X.npy", X)
    path = tmp_path / "data.csv"
    np.savetxt(path, X, delimiter=delimiter, header="a,b,c", comments="")
    for data, out in ((path, "from_csv.npy"), (tmp_path / "X.npy", "from_npy.npy")):
        status, stdout, stderr = run(
            capsys, "cluster", data, "-k", 2, "--out", tmp_path / out, *FAST
        )
        assert status == 0, stderr
        assert "30 samples, vectors of 3 features" in stdout
    found = [np.load(tmp_path / out) for out in ("from_csv.npy", "from_npy.npy")]
    np.testing.assert_array_equal(*found)


def test_csv_of_pandas_column_numbers_skips_them_as_a_header(capsys, tmp_path):
    X, _ = make_blobs(n_samples=30, n_features=3, centers=2, random_state=0)
    path = tmp_path / "frame.csv"
    np.savetxt(path, X, delimiter=",", header="0,1,2", comments="")  # to_csv's
    status, stdout, stderr = run(capsys, "cluster", path, "-k", 2, *FAST)
    assert status == 0, stderr
    assert "(its first line skipped as a header): 30 samples, vectors of 3" in stdout
    # Two binary features: a first sample "0,1" is a sample.
    binary = tmp_path / "binary.csv"
    np.savetxt(binary, np.tile([[0, 1], [1, 0], [1, 1]], (5, 1)), "%d", delimiter=",")
    status, stdout, stderr = run(capsys, "cluster", binary, "-k", 2, *FAST)
    assert status == 0, stderr
    assert "binary.csv: 15 samples, vectors of 2" in stdout
    # With pandas' index column (",0,1,2"): see the next test.


def test_labels_option_replaces_the_npz_y_unread(capsys, tmp_path):
    X, y = make_blobs(n_samples=30, centers=2, random_state=0)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=np.eye(2)[y], labels=y)  # its y is one-hot
    status, stdout, stderr = run(capsys, "cluster", path, "--labels", "labels",
                                 "-k", 2, *FAST)  # fmt: skip
    assert status == 0, stderr
    assert "matched accuracy" in stdout


def test_too_many_clusters_for_kmeans_on_codes_is_refused_before_training(
    capsys, files
):
    args = ["cluster", files / "X.npy", "-k", 61, "--method", "ae-kmeans"]
    status, stdout, stderr = run(capsys, *args, *FAST)
    assert status == 2
    assert "n_samples=60 should be >= n_clusters=61" in stderr
    assert "fitting" not in stdout


@pytest.mark.parametrize("header", ["", "species\n"])
def test_labels_may_be_class_names_in_a_text_file(capsys, files, blobs, header):
    """Class names one per line (as ``pandas`` writes a column of them, with
    its name above) score as their numbers do."""
    _, y = blobs
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    (files / "names.csv").write_text(header + "\n".join(names) + "\n")
    np.savetxt(files / "numbers.csv", y, fmt="%d", header="y", comments="")
    scores = []
    for labels in ("names.csv", "numbers.csv"):
        status, stdout, stderr = run(
            capsys, "cluster", files / "X.npy", "-k", 3,
            "--labels", files / labels, *FAST,
        )  # fmt: skip
        assert status == 0, stderr
        scores.append(stdout[stdout.index("NMI") :])
    assert scores[0] == scores[1]


def test_object_arrays_are_refused_with_the_way_out(capsys, files, blobs):
    _, y = blobs
    np.save(files / "names.npy", np.array(["a", "b", "c"], dtype=object)[y])
    status, _, stderr = run(
        capsys, "cluster", files / "X.npy", "-k", 3, "--labels", files / "names.npy"
    )
    assert status == 2 and "does not load pickles" in stderr and "astype(str)" in stderr
    np.save(files / "names.npy", np.array(["a", "b", "c"])[y])
    status, stdout, stderr = run(
        capsys, "cluster", files / "X.npy", "-k", 3,
        "--labels", files / "names.npy", *FAST,
    )  # fmt: skip
    assert status == 0 and "matched accuracy: " in stdout, stderr


def test_labels_in_columns_are_refused(capsys, files):
    (files / "two.txt").write_text("0 1\n" * 60)
    status, _, stderr = run(
        capsys, "cluster", files / "X.npy", "-k", 3, "--labels", files / "two.txt"
    )
    assert status == 2 and "must be one column" in stderr


def test_labels_are_written_before_the_scores(capsys, files, monkeypatch):
    import skiic.metrics

    def broken(*args):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(skiic.metrics, "matched_accuracy", broken)
    out = files / "kept.npy"
    with pytest.raises(RuntimeError, match="scoring failed"):
        run(capsys, "cluster", files / "X.npy", "-k", 3, "--labels",
            files / "y.npy", "-o", out, *FAST)  # fmt: skip
    assert np.load(out).shape == (60,)


def test_cluster_3d_images(capsys, tmp_path):
    X, _ = load_digits(return_X_y=True)
    np.save(tmp_path / "images.npy", X[:40].reshape(-1, 8, 8))
    status, stdout, stderr = run(
        capsys, "cluster", tmp_path / "images.npy", "-k", 3, "--verbose",
        "--max-epochs", 1, "--device", "cpu", "--method", "deepcluster",
    )  # fmt: skip
    assert status == 0, stderr
    assert "images of shape (1, 8, 8)" in stdout
    assert "train_loss" in stdout  # --verbose prints the per-epoch table


def bad_inputs(tmp_path):
    """(arguments, expected message) of inputs that must fail in one line."""
    X, y = make_blobs(n_samples=20, centers=2, random_state=0)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "vector.npy", X[:, 0])
    np.save(tmp_path / "y_short.npy", y[:5])
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "folder.npy").mkdir()
    np.savez(tmp_path / "two.npz", a=X, b=X)
    (tmp_path / "text.npy").write_text("not numpy")
    (tmp_path / "letters.csv").write_text("1,2\n3,oops\n")
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n")
    images = X.reshape(-1, 1, 1, 2).copy()
    images[3, 0, 0, 1] = np.inf
    np.save(tmp_path / "inf_images.npy", images)
    np.save(tmp_path / "empty_images.npy", np.zeros((0, 1, 8, 8)))
    (tmp_path / "data.parquet").write_text("")
    X_text = X.astype(str)
    np.save(tmp_path / "strings.npy", X_text)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04" + b"\0" * 40)  # no zip
    np.savez_compressed(tmp_path / "damaged.npz", X=np.zeros((200, 50)))
    damaged = bytearray((tmp_path / "damaged.npz").read_bytes())
    damaged[60:80] = b"\xff" * 20  # inside the compressed member
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    np.savez(tmp_path / "scalar_y.npz", X=X, y=np.array(5))
    np.savez(tmp_path / "onehot_y.npz", X=X, y=np.eye(2)[y])
    return [
        (["broken.npz"], "cannot read broken.npz as .npz: File is not a zip file"),
        (["damaged.npz"], "damaged.npz"),
        (["scalar_y.npz"], "(array 'y') must be one column; got shape ()"),
        (["onehot_y.npz"], "(array 'y') must be one column; got shape (20, 2)"),
        (["missing.npy"], "no such file: "),
        (["text.npy"], "is not a NumPy .npy file"),
        (["letters.csv"], "cannot read numbers from"),
        (["nan.csv"], "cannot cluster nan.csv: Input X contains NaN."),
        (["inf_images.npy"], "cannot cluster inf_images.npy: Input X contains inf"),
        (["empty_images.npy"], "holds no data (shape (0, 1, 8, 8))"),
        (["data.parquet"], "unsupported file type '.parquet'"),
        (["strings.npy"], "must hold numbers"),
        (["vector.npy"], "holds an array of shape (20,); expected 2-D"),
        (["two.npz"], "choose the data with --key NAME"),
        (["two.npz", "--key", "c"], "has no array 'c'"),
        (["X.npy", "--key", "X"], "--key applies to .npz files only"),
        (["X.npy", "--input-shape", "1,3,3"], "describes 9 values per sample"),
        (["inf_images.npy", "--input-shape", "1,2,1"], "does not match the shape"),
        (["X.npy", "--labels", tmp_path / "y_short.npy"], "has 5 labels for 20"),
        (["X.npy", "-k", "50"], "n_samples=20 should be >= n_clusters=50"),
        (["X.npy", "-o", tmp_path / "nowhere" / "l.npy"], "no directory"),
        (["X.npy", "-o", "X.npy"], "is the input file X.npy"),
        (["X.npy", "-o", "X"], "is the input file X.npy"),  # np.save adds .npy
        (["X.npy", "--labels", "y.npy", "-o", "y.npy"], "is the input file y.npy"),
        (["X.npy", "-o", "folder.npy"], "is a directory"),
    ]


def test_bad_input_gives_one_line_and_status_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, message in bad_inputs(tmp_path):
        if "-k" not in args:
            args = [*args, "-k", "2"]
        status, _, stderr = run(capsys, "cluster", *args, *FAST)
        assert status == 2, args
        assert stderr.startswith("skiic: error: "), args
        assert stderr.count("\n") == 1, stderr
        assert message in stderr, (args, stderr)
        assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "0"], "expected a positive integer"),
        (["-k", "2", "--input-shape", "8,8"], "expected three positive integers"),
        (["-k", "2", "--method", "dbscan"], "invalid choice: 'dbscan'"),
        ([], "the following arguments are required: --n-clusters"),
    ],
)
def test_bad_arguments_exit_with_usage(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "X.npy", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


class _FailingModel:
    """Stands in for an estimator whose fit raises ``error``."""

    def __init__(self, error):
        self.error = error

    def fit_predict(self, X):
        raise self.error


def test_training_failure_is_one_line(capsys, files, monkeypatch):
    from skiic.exceptions import TrainingError

    error = TrainingError("the loss is NaN at epoch 3;\ntry a smaller lr.")
    monkeypatch.setattr("skiic._cli.build_model", lambda *args: _FailingModel(error))
    status, _, stderr = run(capsys, "cluster", files / "X.npy", "-k", 2, *FAST)
    assert status == 1
    assert stderr == (
        "skiic: error: training failed: the loss is NaN at epoch 3; try a smaller lr.\n"
    )


def test_other_runtime_errors_keep_their_traceback(files, monkeypatch):
    error = RuntimeError("a bug, not the user's input")
    monkeypatch.setattr("skiic._cli.build_model", lambda *args: _FailingModel(error))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["cluster", str(files / "X.npy"), "-k", "2", *FAST])


def test_demo_is_the_default_command(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("skiic._cli.demo", lambda **kwargs: calls.append(kwargs) or [])
    assert main([]) == 0
    assert main(["--random-state", "3", "--device", "cpu"]) == 0
    assert calls == [
        {"random_state": 0, "device": "auto"},
        {"random_state": 3, "device": "cpu"},
    ]


@pytest.mark.parametrize(
    "argv, seed, device",
    [
        (["cluster", "X.npy", "-k", "3"], 0, "auto"),
        (["--random-state", "5", "--device", "cpu", "cluster", "X.npy", "-k", "3"],
         5, "cpu"),
        (["cluster", "X.npy", "-k", "3", "--random-state", "7", "--device", "cpu"],
         7, "cpu"),
        (["--random-state", "5", "cluster", "X.npy", "-k", "3", "--random-state", "7"],
         7, "auto"),
    ],
)  # fmt: skip
def test_seed_and_device_count_before_and_after_the_command(argv, seed, device):
    """``skiic --random-state 5 cluster ...`` used to fit with seed 0: the
    command's defaults overwrote the options given before it."""
    from skiic._cli import _parser

    args = _parser().parse_args(argv)
    assert (args.random_state, args.device) == (seed, device)


def test_warnings_are_one_line_each_on_stderr(capsys, tmp_path):
    """A channels-last looking image file: one 'skiic: warning:' line (not
    Python's file:line form, and not twice), and the clustering still runs."""
    images = np.random.default_rng(0).random((40, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "hwc.npy", images)
    status, stdout, stderr = run(
        capsys, "cluster", tmp_path / "hwc.npy", "-k", 2, *FAST
    )
    assert status == 0, stderr
    lines = stderr.splitlines()
    assert all(line.startswith("skiic: warning: ") for line in lines), stderr
    # (two epochs of noise: the assignments' warning that nothing was learned)
    shape = [line for line in lines if "The images in X have shape" in line]
    assert len(shape) == 1, stderr
    assert "np.moveaxis" in shape[0]
    assert "2 clusters found" in stdout


def test_python_m_skiic_help():
    result = subprocess.run(
        [sys.executable, "-m", "skiic", "cluster", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ["--n-clusters", "--method", "--input-shape", "--labels", "--out"]:
        assert option in result.stdout


def test_python_m_skiic_on_nan_data_is_one_line_without_traceback(tmp_path):
    X = np.ones((10, 3))
    X[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", X)
    result = subprocess.run(
        [sys.executable, "-m", "skiic", "cluster", "nan.npy", "-k", "2", *FAST],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    message = "skiic: error: cannot cluster nan.npy: Input X contains NaN."
    assert result.returncode == 2
    assert result.stderr == message + "\n"  # one line, no traceback
    assert "fitting IICClustering" in result.stdout


# A session that asks for help, makes a usage error and names a missing file.
# torch and scikit-learn take seconds to import: none of this may import them.
QUICK_ANSWERS = """
import sys
from skiic._cli import main

for argv in (["cluster", "--help"], ["cluster", "X.npy", "--n-clusters", "0"]):
    try:
        main(argv)
    except SystemExit as exit:
        assert exit.code == (0 if "--help" in argv else 2), argv
assert main(["cluster", "missing.npy", "-k", "2"]) == 2
print(sorted(name for name in ("torch", "sklearn") if name in sys.modules))
"""

# Stands in for skiic/__init__.py, so that the test checks the modules of the
# command alone, whatever the package's __init__ imports.
BARE_PACKAGE = """
import importlib.util, sys, types

package = types.ModuleType("skiic")
package.__path__ = list(importlib.util.find_spec("skiic").submodule_search_locations)
package.__version__ = "0"
sys.modules["skiic"] = package
"""


def _imported_heavy_modules(code, cwd):
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def test_cli_modules_answer_without_torch_or_sklearn(tmp_path):
    assert _imported_heavy_modules(BARE_PACKAGE + QUICK_ANSWERS, tmp_path) == "[]"


# Needs skiic/__init__.py to import the estimators lazily (a module-level
# __getattr__): `skiic` and `python -m skiic` import the package first.
def test_help_usage_errors_and_missing_files_are_answered_before_torch(tmp_path):
    assert _imported_heavy_modules(QUICK_ANSWERS, tmp_path) == "[]"


def test_ctrl_c_exits_130_and_writes_no_labels(tmp_path):
    import os
    import signal

    data, out = tmp_path / "X.npy", tmp_path / "labels.npy"
    np.save(data, np.random.default_rng(0).random((2000, 8)))
    command = [sys.executable, "-m", "skiic", "cluster", str(data)]
    command += ["--n-clusters", "3", "--max-epochs", "10000", "--out", str(out), "-v"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl-C's default in the child: a suite started in the background
        # hands its children SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # In training: the progress table's line of the first epoch.
        while process.stdout.readline().split()[:1] != ["1"]:
            assert process.poll() is None, "the fit ended before its first epoch"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip() == "skiic: error: interrupted"
    assert not out.exists()
