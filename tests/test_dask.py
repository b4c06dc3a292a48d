"""Grid search spread over a Dask cluster through joblib, and small pickles."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV

from skiic import IICClustering

# One thread in the workers and here alike: float sums then agree.
PARAMS = dict(
    n_init=1, max_epochs=4, n_heads=2, n_head_inits=5, device="auto", n_threads=1
)


def test_pickle_holds_no_data():
    """The fitted estimator carries its network and labels_, never the data."""
    sizes = {}
    for n_samples in (300, 3000):
        X, _ = make_blobs(n_samples=n_samples, centers=3, random_state=0)
        model = IICClustering(3, random_state=0, **PARAMS).fit(X)
        sizes[n_samples] = len(pickle.dumps(model))
    # only labels_ (8 bytes a sample) grows with the data
    assert sizes[3000] - sizes[300] < 2700 * 8 + 4096
    unfitted = len(pickle.dumps(IICClustering(3, **PARAMS)))
    assert unfitted < 2048


def test_grid_search_on_a_dask_cluster_matches_a_local_run():
    distributed = pytest.importorskip("distributed")
    X, _ = make_blobs(n_samples=200, centers=3, random_state=1)
    grid = {"alpha": [1.0, 4.0], "overclustering": [1, 3]}

    def search():
        return GridSearchCV(
            IICClustering(3, random_state=0, **PARAMS), grid, cv=2, n_jobs=-1
        )

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with joblib.parallel_backend("dask"):
            remote = search().fit(X)
        workers = client.run(lambda: __import__("os").getpid())
    assert len(workers) == 2
    local = search().set_params(n_jobs=1).fit(X)
    # Same seeds and threads, same results (up to the order of float sums).
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
        atol=1e-3,
    )
    assert remote.best_params_ == local.best_params_
    assert np.array_equal(remote.best_estimator_.labels_, local.best_estimator_.labels_)
