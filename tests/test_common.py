"""scikit-learn's estimator checks on every skiic estimator."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering
from skiic.augment import ImageAugmentation, VectorAugmentation, VirtualAdversarial

# Small, fast settings: the checks fit dozens of times on tiny data.
INIT_PARAMS = {
    AutoEncoderEmbedder: dict(
        n_components=2, max_epochs=5, batch_size=64, device="cpu", random_state=0
    ),
    IICClustering: dict(
        n_init=1,
        max_epochs=15,
        batch_size=64,
        n_heads=2,
        n_head_inits=5,  # the fresh-head selection runs, at a tenth of its cost
        device="cpu",
        random_state=0,
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


@pytest.mark.parametrize("cls", list(INIT_PARAMS), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    "augmentation", [ImageAugmentation, VectorAugmentation, VirtualAdversarial]
)
def test_augmentation_class_instead_of_instance(cls, augmentation):
    # A class is callable, so it passes the parameter constraint; it must
    # still be rejected up front, naming the fix where there is one.
    estimator = cls(**{**INIT_PARAMS[cls], "augmentation": augmentation})
    shape = (40, 1, 8, 8) if augmentation is ImageAugmentation else (40, 4)
    X = np.random.default_rng(0).random(shape)
    name = augmentation.__name__
    if augmentation is VirtualAdversarial and cls is AutoEncoderEmbedder:
        # the clusterers take VirtualAdversarial views, the autoencoder not
        message = rf"does not accept {name} instances either"
    else:
        message = rf"instance.*augmentation={name}\(\)"
    with pytest.raises(ValueError, match=message):
        estimator.fit(X)
    # and the fix it names works
    if "either" not in message:
        fixed = cls(**{**INIT_PARAMS[cls], "augmentation": augmentation()})
        fixed.set_params(max_epochs=1).fit(X)


@pytest.mark.parametrize("cls", list(INIT_PARAMS), ids=lambda cls: cls.__name__)
def test_image_augmentation_on_vectors_is_rejected(cls):
    estimator = cls(**{**INIT_PARAMS[cls], "augmentation": ImageAugmentation()})
    X = np.random.default_rng(0).random((40, 4))
    with pytest.raises(ValueError, match=r"transforms images, but X holds vectors"):
        estimator.fit(X)
