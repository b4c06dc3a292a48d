"""The benchmark scripts behind docs/benchmarks.md still run: one smoke test each.

Each test runs a script's ``main`` on tiny data (a few hundred digits, one or
two epochs, on the CPU) and checks that it prints its table and writes its
JSON file. The figures themselves are not checked: they mean nothing at
this size.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

TABLE = "| method | runs |"


def run_json(module, argv, tmp_path):
    """Run ``module.main(argv + ["--json", ...])``; return the methods it wrote."""
    out = tmp_path / "runs.json"
    module.main([*argv, "--device", "cpu", "--json", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert runs and all(0 <= r["matched_accuracy"] <= 1 for r in runs)
    return [r["method"] for r in runs]


def test_ablate(tmp_path, capsys):
    import ablate

    argv = ["--n-samples", "200", "--pca", "10", "--seeds", "0"]
    argv += ["--variant", "max_epochs=1", "--confusion"]
    methods = run_json(ablate, argv, tmp_path)
    assert methods == ["KMeans(10)", "PCA(10) + KMeans(10)", "max_epochs=1"]
    printed = capsys.readouterr().out
    assert "| max_epochs=1 | 1 |" in printed and TABLE in printed


@pytest.mark.parametrize("estimator", ["deepcluster", "autoencoder"])
def test_ablate_other_estimators(tmp_path, capsys, estimator):
    import ablate

    argv = ["--estimator", estimator, "--n-samples", "200", "--seeds", "0"]
    argv += ["--variant", "max_epochs=1"]
    methods = run_json(ablate, argv, tmp_path)
    assert methods[-1] == "max_epochs=1"
    note = "inertia" if estimator == "deepcluster" else "reconstruction_mse"
    assert note in capsys.readouterr().out


def test_ablate_on_flat_images(tmp_path, capsys):
    import ablate

    argv = ["--estimator", "autoencoder", "--flat", "--n-samples", "200"]
    argv += ["--seeds", "0", "--variant", "max_epochs=1, n_neighbors=3"]
    methods = run_json(ablate, argv, tmp_path)
    assert methods[-1] == "max_epochs=1, n_neighbors=3"
    assert "digits (200 8x8), flat: 200 samples" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ablate.main(["--flat", "--pca", "10"])


def test_bench_autoencoder(tmp_path, capsys):
    import bench_autoencoder

    argv = ["--n-samples", "200", "--seeds", "0", "--max-epochs", "1"]
    methods = run_json(bench_autoencoder, argv, tmp_path)
    assert methods[-1] == "AutoEncoderEmbedder(10) + KMeans(10)"
    assert TABLE in capsys.readouterr().out


def test_bench_deepcluster(tmp_path, capsys):
    import bench_deepcluster

    argv = ["--n-samples", "200", "--seeds", "0", "--max-epochs", "1"]
    argv += ["--models", "pca", "pca_adversarial", "--pca", "10"]
    methods = run_json(bench_deepcluster, argv, tmp_path)
    assert methods[-2:] == [
        "PCA(10) + DeepClusterEstimator(10)",
        "PCA(10) + DeepClusterEstimator(10), adversarial",
    ]
    assert TABLE in capsys.readouterr().out


def test_bench_iic(tmp_path, capsys):
    import bench_iic

    argv = ["--n-samples", "200", "--seeds", "0", "--max-epochs", "1"]
    argv += ["--models", "pca", "--pca", "10"]
    methods = run_json(bench_iic, argv, tmp_path)
    assert methods[2:] == [
        "PCA(10) + IICClustering(10)",
        "PCA(10) + SpectralClustering(10)",
    ]
    printed = capsys.readouterr().out
    assert TABLE in printed and "nearest neighbours share" in printed


def test_bench_busy(tmp_path, capsys):
    import bench_busy

    argv = ["--n-samples", "200", "--seeds", "0", "--max-epochs", "1"]
    argv += ["--threads", "auto", "1", "--busy", "0", "1", "--device", "cpu"]
    methods = run_json(bench_busy, argv, tmp_path)
    assert methods == [
        "KMeans(10)",
        "IIC n_threads=auto, 0 busy",
        "IIC n_threads=1, 0 busy",
        "IIC n_threads=auto, 1 busy",
        "IIC n_threads=1, 1 busy",
    ]
    assert TABLE in capsys.readouterr().out


def test_bench_streaming(tmp_path, capsys):
    import bench_streaming

    argv = ["--n-samples", "200", "--max-epochs", "1"]  # --seeds: 0 by default
    methods = run_json(bench_streaming, argv + ["--model", "pca"], tmp_path)
    assert methods == [
        "KMeans(10)",
        "PCA(50) + KMeans(10)",  # on IIC's data
        "IICClustering(10), resident",
        "IICClustering(10), streamed",
    ]
    printed = capsys.readouterr().out
    assert "streamed / resident wall time, median over 1 seed(s)" in printed
    assert "| IICClustering(10), streamed | 1 |" in printed


def test_bench_vectors(tmp_path, capsys):
    import bench_vectors

    argv = ["--sets", "iris", "--seeds", "0", "--max-epochs", "2"]
    argv += ["--views", "default", "neighbours", "adversarial", "combined"]
    methods = run_json(bench_vectors, argv, tmp_path)
    assert methods == [
        "iris: KMeans",
        "iris: IIC, default",
        "iris: IIC, neighbours",
        "iris: IIC, adversarial",
        "iris: IIC, combined",
    ]
    assert TABLE in capsys.readouterr().out


def test_summarise_joins_runs_over_exact_figures(tmp_path, capsys):
    """Medians over the joined seeds' exact values (rounding each run's
    printed figures first moved a 10-seed median by up to 0.001)."""
    import summarise

    def write(name, seeds, accuracies):
        runs = [
            {"method": "m", "seed": s, "seconds": 1.0, "nmi": a,
             "matched_accuracy": a}
            for s, a in zip(seeds, accuracies)
        ]  # fmt: skip
        meta = {"data": "d", "device": "cpu", "command": f"run {name}"}
        (tmp_path / name).write_text(json.dumps({"meta": meta, "runs": runs}))
        return str(tmp_path / name)

    first = write("a.json", [0, 1], [0.79301, 0.79000])
    second = write("b.json", [2, 3], [0.79449, 0.79600])
    rows = summarise.main([first, second])
    assert len(rows) == 4
    # the middle two, 0.79301 and 0.79449, average 0.79375; as printed,
    # 0.793 and 0.794, they would average 0.7935, printed 0.793
    assert "| m | 4 | 1.0 | 0.794 [0.790, 0.796] |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="ran seed 0 in .*a.json and in .*a.json"):
        summarise.main([first, first])
    meta = {"data": "other", "device": "cpu", "command": "run c"}
    runs = [{"method": "m", "seed": 9, "seconds": 1.0, "nmi": 0.5,
             "matched_accuracy": 0.5}]  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps({"meta": meta, "runs": runs}))
    with pytest.raises(SystemExit, match="data differ"):
        summarise.main([first, str(tmp_path / "c.json")])
    assert len(summarise.main([first, str(tmp_path / "c.json"), "--allow-mixed"])) == 3
