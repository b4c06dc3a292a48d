"""Data-parallel training over processes (gloo on CPUs) equals one process."""

import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.datasets import make_blobs
from torch import nn

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering, _distributed
from skiic._distributed import (
    Parallel,
    SyncBatchNorm,
    check_devices,
    convert_batchnorm,
    revert_batchnorm,
    start_method,
)
from skiic.augment import VectorAugmentation, VirtualAdversarial
from skiic.exceptions import TrainingError

# Neighbour pairs: their training is reproduced to float precision across
# processes. Adversarial views are checked with the self-labelling stage below:
# their direction for a sample that the network already assigns with certainty
# is float noise, so the trained weights drift a little further apart.
PARAMS = dict(
    n_init=1,
    max_epochs=3,
    n_heads=2,
    n_head_inits=5,
    batch_size=128,
    device="cpu",
    augmentation=VectorAugmentation(),
)


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(n_samples=400, centers=3, random_state=0)
    return X


@pytest.fixture(scope="module")
def single(blobs):
    return IICClustering(3, random_state=0, **PARAMS).fit(blobs)


def assert_same_training(a, b, atol=0):
    np.testing.assert_allclose(
        a.history_[:, "train_loss"], b.history_[:, "train_loss"], rtol=1e-4, atol=atol
    )
    assert np.array_equal(a.labels_, b.labels_)
    assert a.loss_ == pytest.approx(b.loss_, abs=1e-3)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_two_processes_train_like_one(blobs, single, method, monkeypatch):
    """CPU processes fork from a server; GPUs' fresh interpreters (spawn) are
    checked on the CPUs too."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    monkeypatch.setattr(_distributed, "start_method", lambda devices: method)
    spread = IICClustering(3, random_state=0, devices=["cpu", "cpu"], **PARAMS)
    spread.fit(blobs)
    assert_same_training(spread, single)
    np.testing.assert_allclose(
        spread.predict_proba(blobs), single.predict_proba(blobs), atol=1e-3
    )
    # the fitted model is an ordinary one: plain BatchNorm, CPU, picklable
    assert not any(isinstance(m, SyncBatchNorm) for m in spread.module_.modules())


@pytest.mark.parametrize(
    "augmentation", [VectorAugmentation(), VirtualAdversarial()], ids=repr
)
def test_self_labelling_two_processes_train_like_one(blobs, augmentation):
    """The main training, then the stage; adversarial views (their own code
    path in both) included."""
    params = dict(
        PARAMS, augmentation=augmentation, self_labelling=True, random_state=0
    )
    spread = IICClustering(3, devices=["cpu", "cpu"], **params).fit(blobs)
    single = IICClustering(3, **params).fit(blobs)
    assert len(single.history_) == PARAMS["max_epochs"] + 1  # one stage epoch
    # the stage's cross-entropy can be tiny (1e-8): compare it to 1e-6 as well
    assert_same_training(spread, single, atol=1e-6)
    np.testing.assert_allclose(
        spread.predict_proba(blobs), single.predict_proba(blobs), atol=0.02
    )


@pytest.mark.parametrize("augmentation", ["auto", VirtualAdversarial()], ids=repr)
def test_deepcluster_two_processes_train_like_one(blobs, augmentation):
    """Features gathered for one k-means, shards of one global batch (in the
    self-labelling stage as well); the adversarial term is one global mean."""
    # The adversarial directions of confidently assigned samples are float
    # noise (see PARAMS), and the runs' k-means of the third epoch can then
    # land in different partitions (inertia 62.6 and 64.5 with two threads in
    # the single run): with adversarial views the training stops after the
    # second epoch's k-means, which agrees to 1e-7.
    epochs = 2 if isinstance(augmentation, VirtualAdversarial) else 3
    params = dict(
        max_epochs=epochs,
        batch_size=128,
        device="cpu",
        random_state=0,
        self_labelling=True,
        augmentation=augmentation,
    )
    single = DeepClusterEstimator(3, **params).fit(blobs)
    spread = DeepClusterEstimator(3, devices=["cpu", "cpu"], **params).fit(blobs)
    assert len(single.history_) == epochs + 1  # one stage epoch
    for key in ("kmeans_inertia", "pseudo_label_nmi"):
        np.testing.assert_allclose(
            spread.history_[1:epochs, key], single.history_[1:epochs, key], rtol=1e-4
        )
    np.testing.assert_allclose(
        spread.history_[:epochs, "train_loss"],
        single.history_[:epochs, "train_loss"],
        rtol=1e-4,
    )
    # Float rounding differs between the two runs (sums over shards); Adam
    # turns near-zero gradients into steps of about lr, so weights drift apart
    # by ~lr and a few samples on cluster borders may change sides. The
    # stage starts from those slightly different partitions, so its loss
    # (0.399 and 0.406 here) agrees only roughly.
    np.testing.assert_allclose(
        spread.history_[-1, "train_loss"], single.history_[-1, "train_loss"], rtol=0.05
    )
    assert np.mean(spread.labels_ == single.labels_) > 0.97
    assert not any(isinstance(m, SyncBatchNorm) for m in spread.module_.modules())


def _torchrun_like(rank, path, X, queue, random_state):
    """What each process of a torchrun job does: join the group, then fit."""
    dist.init_process_group("gloo", init_method=path, rank=rank, world_size=2)
    try:
        np.random.seed(rank)  # random_state=None: each draws differently
        model = IICClustering(
            3, random_state=random_state, devices="process_group", **PARAMS
        )
        model.fit(X)
        queue.put((rank, model.labels_, model.history_[:, "train_loss"]))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("random_state", [0, None])
def test_existing_process_group_as_with_torchrun(blobs, single, tmp_path, random_state):
    """Every process ends with the same model, rank 0's plan: with
    random_state=0 that of a local run, with None still one model (each
    process would otherwise draw its own seeds and train out of step)."""
    context = torch.multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    path = (tmp_path / "rendezvous").as_uri()
    torch.multiprocessing.start_processes(
        _torchrun_like,
        args=(path, blobs, queue, random_state),
        nprocs=2,
        start_method="spawn",
    )
    (_, labels, losses), (_, other_labels, other_losses) = sorted(
        queue.get() for _ in range(2)
    )
    assert np.array_equal(labels, other_labels)
    np.testing.assert_allclose(losses, other_losses, rtol=1e-4)
    if random_state is not None:
        assert np.array_equal(labels, single.labels_)
        np.testing.assert_allclose(losses, single.history_[:, "train_loss"], rtol=1e-4)


class NaNBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 8)

    def forward(self, x):
        return self.linear(x) * float("nan")


def test_cpu_processes_fork_from_a_server_and_gpus_spawn():
    cpus = check_devices(["cpu", "cpu"])
    expected = "forkserver" if sys.platform != "win32" else "spawn"
    assert start_method(cpus) == expected
    assert start_method([torch.device("cuda:0"), torch.device("cuda:1")]) == "spawn"


def test_failure_in_the_processes_reaches_the_caller(blobs):
    model = IICClustering(3, module=NaNBackbone(), devices=["cpu", "cpu"], **PARAMS)
    with pytest.raises(TrainingError, match="diverged|untrained network"):
        model.fit(blobs)


class RankOneFails(nn.Module):
    """Raises in the process of rank 1 only."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 8)

    def forward(self, x):
        if dist.is_initialized() and dist.get_rank() == 1:
            raise ValueError("only rank 1 fails")
        return self.linear(x)


def test_the_error_of_one_rank_alone_reaches_the_caller(blobs):
    """It came back as a RuntimeError ('A training process failed'): only
    rank 0 kept what it raised."""
    model = IICClustering(3, module=RankOneFails(), devices=["cpu", "cpu"], **PARAMS)
    with pytest.raises(ValueError, match="only rank 1 fails"):
        model.fit(blobs)


class TwoArgumentError(Exception):
    """Does not unpickle: its ``__init__`` wants two arguments."""

    def __init__(self, a, b):
        super().__init__(f"raised with {a} and {b}")


class RaisesTwoArgumentError(RankOneFails):
    def forward(self, x):
        raise TwoArgumentError(1, 2)


def test_an_error_that_does_not_unpickle_is_reported_with_its_text(blobs):
    """Reading it back failed with TypeError ('missing 1 required positional
    argument'), which hid the error itself."""
    model = IICClustering(
        3, module=RaisesTwoArgumentError(), devices=["cpu", "cpu"], **PARAMS
    )
    with pytest.raises(RuntimeError, match="(?s)process failed.*raised with 1 and 2"):
        model.fit(blobs)


class SlowBackbone(nn.Module):
    """Writes its process's id to ``folder`` and trains slowly."""

    def __init__(self, folder):
        super().__init__()
        self.folder = str(folder)
        self.linear = nn.Linear(2, 8)

    def forward(self, x):
        pid = os.getpid()
        with open(os.path.join(self.folder, f"{pid}.pid"), "w"):
            pass
        time.sleep(0.05)
        return self.linear(x)


def _running(pid):
    """Whether process ``pid`` runs (exists and is not a zombie), on Linux."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_interrupted_fit_stops_its_processes(blobs, tmp_path):
    """Ctrl-C in a notebook reaches the caller only: the processes trained on
    (for as long as the fit had left) after fit had raised KeyboardInterrupt."""
    model = IICClustering(
        3,
        module=SlowBackbone(tmp_path),
        devices=["cpu", "cpu"],
        **dict(PARAMS, max_epochs=200),
    )

    def interrupt_once_training():
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    # Python ignores SIGINT where it started ignored (a background job of a
    # script, as CI may run the suite): Ctrl-C's handler, for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_once_training, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            model.fit(blobs)
    finally:
        signal.signal(signal.SIGINT, previous)
    pids = [int(path.stem) for path in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in pids)


class ThreadsBackbone(nn.Module):
    """Records torch's thread count whenever it runs (returned from rank 0)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 8)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.linear(x)


def test_cpu_processes_share_n_threads_and_verbose_names_them(blobs, capsys):
    params = dict(PARAMS, max_epochs=1, n_head_inits=0, verbose=1)
    model = IICClustering(
        3, module=ThreadsBackbone(), devices=["cpu", "cpu"], n_threads=4, **params
    ).fit(blobs)
    assert set(model.module_.backbone.seen) == {2}  # 4 threads over 2 processes
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "[skiic] IICClustering: 400 samples, vectors of 2 features, on cpu, cpu"
    )


@pytest.mark.parametrize(
    "devices, message",
    [
        ([], "at least one"),
        (["cpu", "meta"], "all 'cpu'"),
        (["tpu"], "does not know"),
    ],
    ids=["empty", "mixed", "unknown"],
)
def test_bad_devices(devices, message):
    with pytest.raises(ValueError, match=message):
        check_devices(devices)


def test_gpus_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_devices(["cuda:0", "cuda:1"])


def test_process_group_must_exist(blobs):
    with pytest.raises(ValueError, match="process group"):
        IICClustering(3, devices="process_group", **PARAMS).fit(blobs)


def test_sync_batchnorm_is_plain_batchnorm_in_one_process():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    synced = convert_batchnorm(
        nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)), Parallel()
    )
    synced.load_state_dict(plain.state_dict())
    x = torch.randn(10, 4)
    assert torch.allclose(plain(x), synced(x))
    assert torch.allclose(plain[1].running_mean, synced[1].running_mean)
    back = revert_batchnorm(synced)
    assert isinstance(back[1], nn.BatchNorm1d)
    assert torch.equal(back[1].running_var, plain[1].running_var)


@pytest.mark.parametrize("n_neighbors", [0, 5])
def test_autoencoder_two_processes_train_like_one(blobs, n_neighbors):
    params = dict(
        max_epochs=3,
        batch_size=128,
        n_neighbors=n_neighbors,
        device="cpu",
        random_state=0,
    )
    single = AutoEncoderEmbedder(2, **params).fit(blobs)
    spread = AutoEncoderEmbedder(2, devices=["cpu", "cpu"], **params).fit(blobs)
    np.testing.assert_allclose(
        spread.history_[:, "train_loss"], single.history_[:, "train_loss"], rtol=1e-4
    )
    np.testing.assert_allclose(
        spread.transform(blobs), single.transform(blobs), rtol=1e-3, atol=1e-3
    )
    assert not any(isinstance(m, SyncBatchNorm) for m in spread.module_.modules())


def test_a_memmap_reaches_the_processes_as_its_file(tmp_path):
    from skiic._distributed import MemmapFile

    rows = np.arange(600, dtype=np.float32).reshape(200, 3)
    np.save(tmp_path / "X.npy", rows)  # a header before the rows
    stored = np.load(tmp_path / "X.npy", mmap_mode="r")
    for view in (stored, stored[7:], stored[7:120]):
        handle = MemmapFile.of(view)
        assert isinstance(handle, MemmapFile)
        opened = pickle.loads(pickle.dumps(handle)).open()
        assert isinstance(opened, np.memmap)
        np.testing.assert_array_equal(opened, view)
    # Not a file's rows: as they are.
    for other in (rows, stored[:, :2], np.load(tmp_path / "X.npy", mmap_mode="c")):
        assert MemmapFile.of(other) is other


def test_two_processes_on_a_memmap_train_like_one(blobs, single, tmp_path, monkeypatch):
    sent, spawn = [], _distributed.spawn

    def recording(target, devices, args, **kwargs):
        sent.append(args[1])
        return spawn(target, devices, args, **kwargs)

    monkeypatch.setattr(_distributed, "spawn", recording)
    np.save(tmp_path / "X.npy", blobs)
    stored = np.load(tmp_path / "X.npy", mmap_mode="r")
    model = IICClustering(3, random_state=0, devices=["cpu", "cpu"], **PARAMS)
    assert_same_training(model.fit(stored), single)
    (handle,) = sent  # the file's place went to the processes, not its rows
    assert isinstance(handle, _distributed.MemmapFile)
    assert str(handle.filename) == str(tmp_path / "X.npy")
