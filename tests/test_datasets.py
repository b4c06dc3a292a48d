"""Loading MNIST from local files: the layouts people save it in, and damage."""

import gzip

import numpy as np
import pytest

from skiic.datasets import load_idx, load_mnist


def _npz(tmp_path, shape):
    rng = np.random.default_rng(0)
    arrays = {
        f"{a}_{part}": (
            rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            if a == "X"
            else np.arange(n, dtype=np.uint8) % 10
        )
        for part, n in (("train", 6), ("test", 2))
        for a in "Xy"
    }
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    return path, np.concatenate([arrays["X_train"], arrays["X_test"]])


@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28), (28, 28, 1), (784,)])
def test_every_grey_layout_loads_as_one_channel_images(tmp_path, shape):
    path, stored = _npz(tmp_path, shape)
    X, y = load_mnist(path)
    assert X.shape == (8, 1, 28, 28) and y.shape == (8,)
    np.testing.assert_array_equal(X.reshape(8, -1), stored.reshape(8, -1))


def test_colour_or_odd_images_are_named(tmp_path):
    path, _ = _npz(tmp_path, (28, 28, 3))
    with pytest.raises(ValueError, match=r"shape \(28, 28, 3\); expected grey"):
        load_mnist(path)


def test_a_truncated_idx_file_says_so(tmp_path):
    header = bytes([0, 0, 0x08, 2]) + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    whole = tmp_path / "whole-idx2-ubyte.gz"
    with gzip.open(whole, "wb") as f:
        f.write(header + bytes(range(12)))
    assert load_idx(whole).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    cut = tmp_path / "cut-idx2-ubyte"
    cut.write_bytes(header + bytes(range(7)))
    with pytest.raises(ValueError, match="7 bytes of values.*truncated"):
        load_idx(cut)
    floats = tmp_path / "floats-idx1-ubyte"  # 4-byte floats, cut mid-value
    floats.write_bytes(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + bytes(6))
    with pytest.raises(ValueError, match="6 bytes of values.*4 bytes each"):
        load_idx(floats)
    short = tmp_path / "short-idx3-ubyte"  # cut inside the header's sizes
    short.write_bytes(header[:4] + (3).to_bytes(4, "big"))
    with pytest.raises(ValueError, match="ends inside its header.*2 dimensions"):
        load_idx(short)


def test_one_array_file_is_named(tmp_path):
    """A .npy holds one array, not MNIST's four (numpy's TypeError came out)."""
    np.save(tmp_path / "X.npy", np.zeros((3, 784), dtype=np.uint8))
    with pytest.raises(ValueError, match="holds one array; expected an .npz"):
        load_mnist(tmp_path / "X.npy")


def test_images_and_labels_of_different_lengths_are_named(tmp_path):
    """They were returned misaligned, 8 images with 7 labels."""
    np.savez(
        tmp_path / "mnist.npz",
        X_train=np.zeros((5, 28, 28), dtype=np.uint8),
        y_train=np.zeros(4, dtype=np.uint8),
        X_test=np.zeros((3, 28, 28), dtype=np.uint8),
        y_test=np.zeros(3, dtype=np.uint8),
    )
    with pytest.raises(ValueError, match="5 train images but 4 train labels"):
        load_mnist(tmp_path / "mnist.npz")
    load_mnist(tmp_path / "mnist.npz", split="test")  # the test part is whole


def test_labels_as_a_column_load_flat_and_other_shapes_are_named(tmp_path):
    """(n, 1) labels came back as (n, 1); a 0-d array raised TypeError."""
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    np.savez(
        tmp_path / "column.npz",
        X_train=images,
        y_train=np.arange(4)[:, None],
        X_test=images[:2],
        y_test=np.arange(2)[:, None],
    )
    _, y = load_mnist(tmp_path / "column.npz")
    assert y.tolist() == [0, 1, 2, 3, 0, 1]
    np.savez(
        tmp_path / "scalar.npz",
        X_train=images,
        y_train=np.array(3),
        X_test=images[:2],
        y_test=np.arange(2),
    )
    with pytest.raises(ValueError, match=r"train labels have shape \(\)"):
        load_mnist(tmp_path / "scalar.npz")
