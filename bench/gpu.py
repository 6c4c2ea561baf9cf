"""Benchmark: cutedl on an NVIDIA GPU (CuPy backend) next to PyTorch CUDA on the same GPU.

Three MNIST models, Adam, softmax cross-entropy, eager PyTorch with the same layers:

- MLP 784-400-100-10 ReLU, batch 128 (bench/mlp.py's network);
- CNN of examples/mnist_cnn.py, batch 64: Conv2D 32 5x5 same + ReLU -> MaxPool 2 -> Conv2D 64
  5x5 same + ReLU -> MaxPool 2 -> Dense 1024 ReLU -> Dropout 0.5 -> Dense 10;
- LSTM-128 on the 28 rows of each image, batch 128 (bench/rnn.py's network).

Each framework trains ``--steps`` batches after ``--warmup`` batches (CuPy compiles its kernels
and cuDNN/cuBLAS pick algorithms then); the device is synchronised before the clock stops. The
time per step is extrapolated to an epoch of 60,000 images (``ceil(60000 / batch)`` steps), so
the table reads s/epoch *extrapolated from --steps steps*. Both loops copy each batch from host
memory and bring the loss back every step (cutedl's Session does; the PyTorch loop calls
``loss.item()``). cutedl on the CPU (NumPy backend) is timed on the CNN with ``--cpu-steps``.

    python bench/gpu.py                      # all three models, 100 timed steps each
    python bench/gpu.py --steps 30 --cpu-steps 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

EPOCH = 60000
BATCH = {"mlp": 128, "cnn": 64, "lstm": 128}
TARGET = {"mlp": 2.0, "cnn": 2.0, "lstm": 3.0}   # cutedl GPU / PyTorch CUDA, at most


def _data(n: int):
    from cutedl import datasets

    (x, y), _ = datasets.mnist.load_data()
    x = datasets.normalize(x[:n]).reshape(-1, 1, 28, 28).astype(np.float32)
    return x, y[:n].astype(np.int64)


def _cutedl_model(kind):
    from cutedl import Model, layers

    if kind == "mlp":
        stack = [layers.Flatten(inshape=(1, 28, 28)), layers.Dense(400, activation="relu"),
                 layers.Dense(100, activation="relu"), layers.Dense(10, activation="softmax")]
    elif kind == "cnn":
        stack = [layers.Conv2D(32, 5, inshape=(1, 28, 28), padding="same", activation="relu"), layers.MaxPool2D(2),
                 layers.Conv2D(64, 5, padding="same", activation="relu"), layers.MaxPool2D(2), layers.Flatten(),
                 layers.Dense(1024, activation="relu"), layers.Dropout(0.5), layers.Dense(10, activation="softmax")]
    else:
        stack = [layers.Reshape((28, 28), inshape=(1, 28, 28)), layers.LSTM(128),
                 layers.Dense(10, activation="softmax")]
    return Model(stack).assemble()


def _sync(name):
    if name == "cupy":
        import cupy
        cupy.cuda.Device().synchronize()


def time_cutedl(kind, x, y, steps, warmup, device):
    """Seconds per training step of cutedl on ``device`` ('cupy' or 'numpy')."""
    import cutedl
    from cutedl import Dataset, Session, backend

    backend.use_backend(device)
    try:
        cutedl.set_seed(0)
        batch = BATCH[kind]
        sess = Session(_cutedl_model(kind), "sparse_categorical_crossentropy", "adam")
        sess.fit(Dataset(x[:warmup * batch], y[:warmup * batch], batch_size=batch), epochs=1, verbose=0)
        _sync(device)
        n = steps * batch
        data = Dataset(x[:n], y[:n], batch_size=batch)
        t0 = time.perf_counter()
        sess.fit(data, epochs=1, verbose=0)
        _sync(device)
        return (time.perf_counter() - t0) / steps
    finally:
        backend.use_backend("numpy")


def time_torch(kind, x, y, steps, warmup):
    """Seconds per training step of eager PyTorch on CUDA, or None without torch.cuda."""
    try:
        import torch
    except ImportError:
        print("torch is not installed: no PyTorch CUDA column")
        return None
    if not torch.cuda.is_available():
        print("torch.cuda is not available: no PyTorch CUDA column")
        return None
    nn = torch.nn
    torch.manual_seed(0)
    if kind == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 100), nn.ReLU(),
                            nn.Linear(100, 10))
    elif kind == "cnn":
        net = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
    else:
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.LSTM(28, 128, batch_first=True)
                self.out = nn.Linear(128, 10)

            def forward(self, v):
                _, (h, _) = self.rnn(v.reshape(-1, 28, 28))
                return self.out(h[-1])
        net = Net()
    dev = torch.device("cuda")
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lossf = nn.CrossEntropyLoss()
    batch = BATCH[kind]

    def run(count):
        for i in range(count):
            xb = torch.from_numpy(x[i * batch:(i + 1) * batch]).to(dev)
            yb = torch.from_numpy(y[i * batch:(i + 1) * batch]).to(dev)
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(xb), yb)
            loss.backward()
            opt.step()
            loss.item()   # the logged loss, as cutedl's Session brings back every step

    run(warmup)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    run(steps)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def _fmt(value, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def gpu_name() -> str:
    try:
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return f"{name.decode() if isinstance(name, bytes) else name} (CuPy {cupy.__version__})"
    except Exception as err:  # noqa: BLE001 - printed, not hidden
        return f"no GPU through CuPy ({type(err).__name__}: {err})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=list(BATCH), default=list(BATCH))
    p.add_argument("--steps", type=int, default=100, help="timed steps per model and framework")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (kernel compilation, autotuning)")
    p.add_argument("--cpu-steps", type=int, default=10, help="timed steps of cutedl on the CPU (CNN); 0: skip")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    args = p.parse_args(argv)

    print(f"GPU: {gpu_name()}")
    try:
        import torch
        print(f"PyTorch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    except ImportError:
        pass
    need = (args.steps + args.warmup) * max(BATCH.values())
    x, y = _data(min(EPOCH, max(need, (args.cpu_steps + 2) * BATCH["cnn"])))
    rows = []
    for kind in args.models:
        steps_epoch = math.ceil(EPOCH / BATCH[kind])
        row = {"model": kind, "batch": BATCH[kind], "steps": args.steps}
        try:
            row["cutedl_gpu"] = time_cutedl(kind, x, y, args.steps, args.warmup, "cupy") * steps_epoch
        except RuntimeError as err:   # no CuPy or no GPU: use_backend says which
            raise SystemExit(f"bench/gpu.py: {err}") from None
        t = time_torch(kind, x, y, args.steps, args.warmup)
        row["torch_cuda"] = None if t is None else t * steps_epoch
        if kind == "cnn" and args.cpu_steps:
            row["cutedl_cpu"] = time_cutedl(kind, x, y, args.cpu_steps, 2, "numpy") * steps_epoch
        rows.append(row)
        print(f"  {kind}: {json.dumps(row)}", flush=True)

    print(f"\nMNIST, Adam, s/epoch extrapolated from {args.steps} timed steps (60,000 images), GPU: {gpu_name()}")
    print(f"{'model':6} {'batch':>5} {'cutedl GPU':>11} {'torch CUDA':>11} {'ratio':>7} {'target':>7} "
          f"{'cutedl CPU':>11} {'GPU speedup':>11}")
    for r in rows:
        ratio = r["cutedl_gpu"] / r["torch_cuda"] if r["torch_cuda"] else None
        cpu = r.get("cutedl_cpu")
        cells = [r["model"], r["batch"], _fmt(r["cutedl_gpu"], "{:.2f}s"), _fmt(r["torch_cuda"], "{:.2f}s"),
                 _fmt(ratio, "{:.2f}x"), "<={:.0f}x".format(TARGET[r["model"]]), _fmt(cpu, "{:.1f}s"),
                 _fmt(cpu / r["cutedl_gpu"] if cpu else None, "{:.1f}x")]
        print("{:6} {:>5} {:>11} {:>11} {:>7} {:>7} {:>11} {:>11}".format(*cells))
    print("targets: cutedl GPU <= 2x PyTorch CUDA (MLP, CNN), <= 3x (LSTM); CNN >= 10x faster than cutedl on the CPU")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu_name(), "steps": args.steps, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
