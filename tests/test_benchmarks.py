"""The benchmark scripts behind docs/benchmarks.md still run (tiny data, 1 epoch)."""

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

ablate = pytest.importorskip("ablate")
bench_iic = pytest.importorskip("bench_iic")


def test_parse_variant():
    from skiic.augment import VectorAugmentation

    assert ablate.parse_variant("") == {}
    assert ablate.parse_variant("alpha=1.0, augmentation=None") == {
        "alpha": 1.0,
        "augmentation": None,
    }
    assert ablate.parse_variant(
        "augmentation=VectorAugmentation(noise=0.0, mask=0.2)"
    ) == {"augmentation": VectorAugmentation(noise=0.0, mask=0.2)}
    with pytest.raises(ValueError, match="neither a Python literal"):
        ablate.parse_variant("augmentation=open('x')")
    with pytest.raises(ValueError, match="name=value"):
        ablate.parse_variant("1.0")


def test_ablate_runs_every_variant_and_seed(tmp_path, capsys):
    out = tmp_path / "runs.json"
    ablate.main(
        [
            "--n-samples", "200", "--pca", "10", "--seeds", "0", "1",
            "--variant", "max_epochs=1, n_head_inits=0",
            "--variant", "max_epochs=1, n_head_inits=0, augmentation=None",
            "--json", str(out),
        ]
    )  # fmt: skip
    runs = json.loads(out.read_text())["runs"]
    assert [(r["method"], r["seed"]) for r in runs] == [
        ("max_epochs=1, n_head_inits=0", 0),
        ("max_epochs=1, n_head_inits=0, augmentation=None", 0),
        ("max_epochs=1, n_head_inits=0", 1),
        ("max_epochs=1, n_head_inits=0, augmentation=None", 1),
    ]
    assert all(0 <= r["matched_accuracy"] <= 1 and "loss" in r for r in runs)
    assert "| max_epochs=1, n_head_inits=0 | 2 |" in capsys.readouterr().out


def test_bench_iic_vectors_with_spectral_baseline(tmp_path, capsys):
    out = tmp_path / "runs.json"
    bench_iic.main(
        [
            "--n-samples", "300", "--seeds", "0", "--models", "pca",
            "--pca", "10", "--max-epochs", "1", "--json", str(out),
        ]
    )  # fmt: skip
    methods = [r["method"] for r in json.loads(out.read_text())["runs"]]
    assert methods == [
        "KMeans(10)",
        "PCA(10) + KMeans(10)",
        "PCA(10) + IICClustering(10)",
        "PCA(10) + SpectralClustering(10)",
    ]
    printed = capsys.readouterr().out
    assert "of the 10 nearest neighbours in PCA space share" in printed
