"""The CPU threads and memory layout a fit uses, and what it says while it runs."""

import numpy as np
import pytest
import torch
from torch import nn

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering, _device

ESTIMATORS = [IICClustering, DeepClusterEstimator, AutoEncoderEmbedder]
REAL_BUSY_ELSEWHERE = _device._busy_elsewhere


@pytest.fixture
def X():
    return np.random.default_rng(0).random((90, 4))


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class _CountThreads(nn.Module):
    """A backbone that records torch's thread count whenever it runs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 8)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.linear(x)


@pytest.mark.parametrize(
    "n_threads, current, machine, busy, expected",
    [
        (None, 3, 8, 5, 3),
        (2, 3, 8, 5, 2),
        ("auto", 2, 2, 0, 2),
        ("auto", 2, 2, 1, 1),
        ("auto", 2, 2, 7, 1),
        ("auto", 64, 8, 0, 8),
        ("auto", 8, 64, 40, 8),
        ("auto", 8, 64, 60, 4),
    ],
    ids=[
        "none-keeps",
        "int",
        "auto-quiet",
        "auto-one-busy",
        "auto-all-busy",
        "auto-capped-by-cores",
        "auto-busy-host-with-room",
        "auto-busy-host-nearly-full",
    ],
)
def test_thread_resolution(monkeypatch, n_threads, current, machine, busy, expected):
    monkeypatch.setattr(_device, "_busy_elsewhere", lambda: busy)
    monkeypatch.setattr("joblib.cpu_count", lambda: min(8, machine))
    monkeypatch.setattr(_device.os, "cpu_count", lambda: machine)
    assert _device.resolve_threads(n_threads, current) == expected


def test_busy_elsewhere_reads_a_count(monkeypatch):
    # taken at import, before conftest's quiet-machine stand-in replaces it
    assert REAL_BUSY_ELSEWHERE() >= 0
    assert _device._own_running_threads() >= 1
    # the fourth field of /proc/loadavg counts runnable threads, ours included
    import io

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/loadavg"
        return io.StringIO("1.52 1.20 0.98 7/301 12345\n")

    monkeypatch.setattr(_device, "open", fake_open, raising=False)
    monkeypatch.setattr(_device, "_own_running_threads", lambda: 2)
    monkeypatch.setattr(_device, "_LAST_READING", [float("-inf"), 0])
    assert REAL_BUSY_ELSEWHERE() == 5
    # the reading is reused for a second
    monkeypatch.setattr(_device, "_own_running_threads", lambda: 7)
    assert REAL_BUSY_ELSEWHERE() == 5

    def no_proc(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr(_device, "open", no_proc, raising=False)
    monkeypatch.setattr(_device, "_LAST_READING", [float("-inf"), 0])
    assert REAL_BUSY_ELSEWHERE() == 0


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_fit_trains_with_its_threads_and_restores_the_callers(cls, X):
    torch.set_num_threads(2)
    module = _CountThreads()
    model = cls(max_epochs=1, device="cpu", n_threads=1, module=module).fit(X)
    assert set(model.module_.backbone.seen) == {1}
    assert torch.get_num_threads() == 2
    # and prediction runs with them too
    model.module_.backbone.seen.clear()
    model.transform(X)
    assert set(model.module_.backbone.seen) == {1}
    assert torch.get_num_threads() == 2
    # and so does score (IIC's pairs views of X through the network)
    model.module_.backbone.seen.clear()
    model.score(X)
    assert set(model.module_.backbone.seen) == {1}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_none_leaves_torchs_setting(X, threads):
    torch.set_num_threads(threads)
    module = _CountThreads()
    model = IICClustering(3, max_epochs=1, device="cpu", n_threads=None, module=module)
    model.fit(X)
    assert set(model.module_.backbone.seen) == {threads}


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_verbose_says_what_the_fit_does_before_training(cls, X, capsys):
    cls(max_epochs=1, device="cpu", n_threads=1, verbose=1).fit(X)
    lines = [line for line in capsys.readouterr().out.splitlines() if "[skiic]" in line]
    assert lines[0] == (
        f"[skiic] {cls.__name__}: 90 samples, vectors of 4 features, on cpu with "
        "1 CPU thread"
    )
    if cls is AutoEncoderEmbedder:
        assert lines[1] == "[skiic] training 1 epoch on 90 samples"
    else:
        assert lines[1] == "[skiic] searching the 10 nearest neighbours of 90 samples"


@pytest.mark.parametrize(
    "terminal, env, coloured",
    [
        (False, {}, False),
        (True, {}, True),
        (True, {"NO_COLOR": "1"}, False),
        (False, {"FORCE_COLOR": "1"}, True),
    ],
)
def test_epoch_table_is_coloured_only_on_a_terminal(
    X, capsys, monkeypatch, terminal, env, coloured
):
    """A log file or a pipe gets the per-epoch table without ANSI escapes;
    NO_COLOR and FORCE_COLOR decide when set."""
    import sys

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal, raising=False)
    IICClustering(3, max_epochs=4, device="cpu", n_threads=1, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "iic_loss" in out and "train_loss" in out
    assert ("\x1b[" in out) == coloured


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bar_only_where_it_redraws(X, capsys, monkeypatch, terminal):
    """The per-batch bar redraws in place on a terminal; in a log file or a
    pipe every redraw would stay, so there the epoch table stands alone."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
    IICClustering(3, max_epochs=2, device="cpu", n_threads=1, verbose=1).fit(X)
    captured = capsys.readouterr()
    assert "train_loss" in captured.out
    assert ("it/s]" in captured.err) == terminal


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cpu_fits_convolutions_channels_last(cls):
    """On the CPU the image networks train and predict in the NHWC layout
    (1.3 to 2.5 times faster there); the weights are the same numbers."""
    images = np.random.default_rng(0).random((60, 1, 8, 8)).astype(np.float32)
    model = cls(2, max_epochs=1, device="cpu", random_state=0).fit(images)
    convs = [m.weight for m in model.module_.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) >= 2
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not convs[1].is_contiguous()  # 16 or 32 input channels: truly NHWC


class _ViewFlattening(nn.Module):
    """The tutorials' way to flatten: ``view``, which needs the NCHW layout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 16)

    def forward(self, x):
        x = torch.relu(self.conv(x.reshape(len(x), 1, 8, 8)))
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_a_users_conv_module_keeps_its_layout(cls):
    """Only skiic's own networks go channels-last: a user's module that
    flattens with view() failed in training ('view size is not compatible')."""
    images = np.random.default_rng(0).random((60, 1, 8, 8)).astype(np.float32)
    model = cls(2, module=_ViewFlattening(), max_epochs=1, device="cpu", random_state=0)
    model.fit(images)
    assert model.module_.backbone.conv.weight.is_contiguous()
    (model.transform if cls is AutoEncoderEmbedder else model.predict)(images)


def test_fast_layout_changes_the_layout_not_the_function():
    from skiic.networks import ConvBackbone

    torch.manual_seed(0)
    net = ConvBackbone((3, 12, 12), channels=(8, 16)).eval()
    x = torch.randn(5, 3, 12, 12)
    with torch.no_grad():
        before = net(x)
        assert _device.fast_layout(net, torch.device("cpu")) is net
        after = net(x)
    assert net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(before, after, atol=1e-5)
    other = ConvBackbone((3, 12, 12), channels=(8, 16))
    _device.fast_layout(other, "cuda")  # layout only; nothing is moved
    assert other.features[0].weight.is_contiguous()
