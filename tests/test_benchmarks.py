"""The benchmark scripts behind docs/benchmarks.md still run (tiny data, 1 epoch)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _common  # noqa: E402
import ablate  # noqa: E402
import bench_iic  # noqa: E402


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


@pytest.mark.parametrize(
    "text, message",
    [
        ("augmentation=open('x')", "neither a Python literal"),
        ("1.0", "name=value"),
        ("**{'alpha': 1}", "name=value"),
        ("alpha=", "not a comma-separated list"),
        ("alpha=1, alpha=2", "sets alpha twice"),
        ("augmentation=VectorAugmentation(noise=x)", "literal arguments"),
    ],
)
def test_parse_variant_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        ablate.parse_variant(text)


def test_ablate_rejects_repeated_variants():
    with pytest.raises(SystemExit):
        ablate.main(["--variant", "alpha=1.0", "--variant", "alpha=1.0"])


def test_neighbor_agreement_excludes_the_sample_even_among_duplicates(capsys):
    # samples 0 and 1 are duplicates with different labels: each must find the
    # other, never itself, so both count as disagreeing
    Z = np.array([[0.0], [0.0], [5.0], [5.1], [5.3]])
    y = np.array([0, 1, 1, 1, 1])
    share = _common.print_neighbor_agreement(Z, y, n_neighbors=1)
    assert share == pytest.approx(3 / 5)
    assert "share the sample's label" in capsys.readouterr().out


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
        ("KMeans(10)", 0),
        ("PCA(10) + KMeans(10)", 0),
        ("max_epochs=1, n_head_inits=0", 0),
        ("max_epochs=1, n_head_inits=0, augmentation=None", 0),
        ("KMeans(10)", 1),
        ("PCA(10) + KMeans(10)", 1),
        ("max_epochs=1, n_head_inits=0", 1),
        ("max_epochs=1, n_head_inits=0, augmentation=None", 1),
    ]
    assert all(0 <= r["matched_accuracy"] <= 1 for r in runs)
    assert all("loss" in r for r in runs if "KMeans" not in r["method"])
    printed = capsys.readouterr().out
    assert "| max_epochs=1, n_head_inits=0 | 2 |" in printed
    assert "nearest neighbours share the sample's label" in printed


def test_ablate_autoencoder_with_confusion(tmp_path, capsys):
    out = tmp_path / "runs.json"
    ablate.main(
        [
            "--estimator", "autoencoder", "--n-samples", "200", "--seeds", "0",
            "--variant", "max_epochs=1", "--confusion", "--json", str(out),
        ]
    )  # fmt: skip
    methods = [r["method"] for r in json.loads(out.read_text())["runs"]]
    assert methods == ["KMeans(10)", "PCA(10) + KMeans(10)", "max_epochs=1"]
    run = json.loads(out.read_text())["runs"][-1]
    assert run["reconstruction_mse"] > 0
    printed = capsys.readouterr().out
    assert "rows: classes [" in printed and "| time (s), median |" in printed


def test_bench_iic_vectors_with_spectral_baseline(tmp_path, capsys):
    out = tmp_path / "runs.json"
    bench_iic.main(
        [
            "--n-samples", "300", "--seeds", "0", "--models", "pca",
            "pca-adversarial", "--pca", "10", "--max-epochs", "1",
            "--json", str(out),
        ]
    )  # fmt: skip
    methods = [r["method"] for r in json.loads(out.read_text())["runs"]]
    assert methods == [
        "KMeans(10)",
        "PCA(10) + KMeans(10)",
        "PCA(10) + IICClustering(10)",
        "PCA(10) + IICClustering(10), adversarial",
        "PCA(10) + SpectralClustering(10)",
    ]
    printed = capsys.readouterr().out
    assert "of the 10 nearest neighbours share the sample's label" in printed


def test_iic_heads_diagnostic_runs(tmp_path, capsys):
    import iic_heads

    out = tmp_path / "heads.json"
    rows = iic_heads.main(
        [
            "--n-samples", "200", "--seeds", "0", "--max-epochs", "1",
            "--n-fresh", "2", "--overclustering", "2", "--json", str(out),
        ]
    )  # fmt: skip
    (row,) = json.loads(out.read_text())["runs"]
    assert row == pytest.approx(rows[0])
    for key in (
        "selected_accuracy",
        "fresh_lowest_loss_accuracy",
        "fresh_best_accuracy",
        "purity_20",
        "kmeans_features_accuracy",
    ):
        assert 0 < row[key] <= 1
    assert row["fresh_best_accuracy"] >= row["fresh_median_accuracy"]
    printed = capsys.readouterr().out
    assert "digits (200 8x8)" in printed
    assert "2 fresh 10-cluster heads" in printed


@pytest.mark.parametrize(
    "option", ["--n-fresh=0", "--overclustering=1", "--n-clusters=1", "--max-epochs=0"]
)
def test_iic_heads_rejects_bad_options(option):
    import iic_heads

    with pytest.raises(SystemExit):
        iic_heads.main([option])


def test_purity_counts_each_cluster_as_its_majority_class():
    import iic_heads

    y = np.array([0, 0, 1, 1, 2, 2])
    assert iic_heads.purity(y, np.array([0, 0, 1, 1, 2, 2])) == 1.0
    # cluster 0 holds classes 0, 0, 1: two of three right; cluster 1 holds 1, 2, 2
    assert iic_heads.purity(y, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(4 / 6)


def _vat_views_runs(tmp_path, *options):
    """The rows ``vat_views.py`` writes on 300 digits, PCA(10), one epoch."""
    import vat_views

    out = tmp_path / "vat.json"
    vat_views.main(
        [
            "--n-samples", "300", "--seeds", "0", "--pca", "10", "--epochs", "1",
            *options, "--json", str(out),
        ]
    )  # fmt: skip
    return json.loads(out.read_text())["runs"]


def test_vat_views_runs_both_objectives(tmp_path, capsys):
    runs = _vat_views_runs(tmp_path)
    assert [r["method"] for r in runs] == [
        "PCA(10) + KMeans(10)",
        "PCA(10) + VAT views, iic",
        "PCA(10) + VAT views, imsat",
    ]
    assert all(0 < r["matched_accuracy"] <= 1 for r in runs)
    assert "| PCA(10) + VAT views, imsat | 1 |" in capsys.readouterr().out


def test_adversarial_view_moves_each_sample_by_its_eps():
    import torch
    import vat_views

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    )
    x = torch.randn(6, 5)
    eps = torch.linspace(0.1, 0.6, 6)
    moved = vat_views.adversarial_view(net, x, eps)
    np.testing.assert_allclose((moved - x).norm(dim=1), eps, rtol=1e-4)

    # The move raises the divergence from the clean prediction more than a
    # random move of the same length does, on average over samples.
    def divergence(z):
        p = net(x).softmax(1)
        return (p * (p.log() - net(z).log_softmax(1))).sum(1)

    random = x + eps[:, None] * torch.nn.functional.normalize(
        torch.randn_like(x), dim=1
    )
    with torch.no_grad():
        assert divergence(moved).mean() > divergence(random).mean()


def test_bench_vectors_compares_the_second_views(tmp_path, capsys):
    import bench_vectors

    out = tmp_path / "vectors.json"
    bench_vectors.main(
        ["--sets", "iris", "--seeds", "0", "--max-epochs", "2", "--json", str(out)]
    )
    runs = json.loads(out.read_text())["runs"]
    assert [r["method"] for r in runs] == [
        "iris: KMeans",
        "iris: IIC, neighbours",
        "iris: IIC, adversarial",
    ]
    assert runs[0]["matched_accuracy"] > 0.8  # KMeans on standardised iris
    assert "loss" not in runs[0] and all(np.isfinite(r["loss"]) for r in runs[1:])
    assert all(r["n_clusters_used"] >= 2 for r in runs)
    assert "| iris: IIC, adversarial | 1 |" in capsys.readouterr().out


def test_head_selection_diagnostic_sees_every_candidate(tmp_path, capsys):
    import head_selection

    from skiic import _iic

    select = _iic._select_head
    out = tmp_path / "heads.json"
    head_selection.main(
        [
            "--n-samples", "300", "--seeds", "0", "--pca", "10",
            "--n-head-inits", "3", "--json", str(out),
        ]
    )  # fmt: skip
    assert _iic._select_head is select  # the wrapper is removed again
    (row,) = json.loads(out.read_text())["runs"]
    assert len(row["trained_accuracy"]) == len(row["trained_losses"]) == 5
    assert all(0 < acc <= 1 for acc in row["trained_accuracy"])
    losses = row["trained_losses"] + [row["fresh_lowest_loss"]]
    assert row["selected_loss"] == pytest.approx(min(losses), abs=1e-6)
    assert "selected candidate" in capsys.readouterr().out


def test_vat_views_with_clean_statistics_scores_both_evaluations(tmp_path):
    runs = _vat_views_runs(tmp_path, "--objective", "iic", "--bn", "clean")
    assert [r["method"] for r in runs] == [
        "PCA(10) + KMeans(10)",
        "PCA(10) + VAT views, iic, clean BN",
        "  same net, probe statistics (iic)",
    ]


def test_vat_views_clean_statistics_come_from_clean_batches_only():
    import torch
    import vat_views

    X = np.random.default_rng(0).normal(size=(256, 10)).astype(np.float32)

    def first_running_var(bn):
        net, data = vat_views.train(
            X, objective="iic", eps_scale=0.5, lam=0.1, alpha=2.0, epochs=2,
            batch_size=64, lr=1e-3, seed=0, device=torch.device("cpu"), bn=bn,
        )  # fmt: skip
        norm = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d))
        return norm.running_var.mean().item(), net, data

    contaminated, _, _ = first_running_var("contaminated")
    clean, net, data = first_running_var("clean")
    # probe steps of length xi=10 on unit-variance data inflate the variances
    # (1.07 against 0.62 here; the probe is one pass of four per step)
    assert contaminated > 1.4 * clean
    # re-estimating with probe batches does the same, on a copy
    before = [b.clone() for b in net.buffers()]
    labels = vat_views.probe_statistics(net, data, batch_size=64)
    assert labels.shape == (256,)
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffers()))
