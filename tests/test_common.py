"""scikit-learn's estimator checks on every skiic estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering

# Small, fast settings: the checks fit dozens of times on tiny data.
INIT_PARAMS = {
    AutoEncoderEmbedder: dict(
        n_components=2, max_epochs=5, batch_size=64, device="cpu", random_state=0
    ),
    IICClustering: dict(
        n_init=1, max_epochs=15, batch_size=64, n_heads=2, device="cpu", random_state=0
    ),
    DeepClusterEstimator: dict(
        max_epochs=3, batch_size=64, device="cpu", random_state=0
    ),
}

ESTIMATORS = [cls(**params) for cls, params in INIT_PARAMS.items()]

# Checks that cannot apply, each with its reason.
EXPECTED_FAILED_CHECKS = {
    "AutoEncoderEmbedder": {},
    "IICClustering": {},
    "DeepClusterEstimator": {},
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
