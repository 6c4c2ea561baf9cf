"""Character-level language model: Embedding -> LSTM -> softmax over the next character.

Trains on the text of Python's own documentation (``pydoc_data.topics``, part of every CPython)
or on any UTF-8 file given with ``--text``. After every ``--sample-every`` epochs a listener
writes text sampled at several temperatures (low: safe and repetitive, 1.0: the model's own
distribution). The PNG report shows the loss, the perplexity ``exp(loss)`` (the number of
characters the model is, in effect, choosing between) and the latest samples.

    python examples/text_generation.py                       # all 465k characters, 30 epochs
    python examples/text_generation.py --text book.txt --epochs 30
    python examples/text_generation.py --epochs 1 --limit 5000 --units 32   # a smoke run
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, optimizers


def load_text(path: str | None = None, limit: int | None = None) -> str:
    """The training text: a file's contents, or every topic of Python's built-in help."""
    if path is None:
        from pydoc_data.topics import topics

        text = "\n\n".join(topics[k].strip() for k in sorted(topics))
    else:
        text = Path(path).read_text(encoding="utf-8")
    return text[:limit] if limit else text


class Vocabulary:
    """Characters <-> integer ids (0 .. size-1, in sorted order)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text if c in self.index], dtype=np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def windows(ids: np.ndarray, seq_len: int):
    """Non-overlapping training pairs: x = ids[k : k+T], y = ids[k+1 : k+T+1] (the next characters)."""
    n = (len(ids) - 1) // seq_len
    x = ids[:n * seq_len].reshape(n, seq_len)
    y = ids[1:n * seq_len + 1].reshape(n, seq_len)
    return x, y


def generate(model: Model, vocab: Vocabulary, prompt: str, length: int, temperatures, rng, window: int) -> list:
    """``length`` characters after ``prompt`` for each temperature, sampled together as one batch.

    The model reads the last ``window`` characters at each step (the length it was trained on).
    """
    temps = np.asarray(temperatures, dtype=np.float64)[:, None]  # (k, 1)
    ids = np.tile(vocab.encode(prompt), (len(temps), 1))  # (k, len(prompt))
    out = np.empty((len(temps), length), dtype=np.int32)
    for t in range(length):
        p = model.predict(ids[:, -window:])[:, -1, :].astype(np.float64)  # (k, vocab) next-char probabilities
        logits = np.log(np.maximum(p, 1e-30)) / temps
        q = np.exp(logits - logits.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        out[:, t] = [rng.choice(len(vocab), p=row) for row in q]
        ids = np.concatenate([ids, out[:, t:t + 1]], axis=1)
    return [vocab.decode(row) for row in out]


class SampleText(listeners.Listener):
    """Every ``every`` epochs (and after the last), sample text at each temperature.

    ``samples`` collects ``(epoch, {temperature: text})``; ``write`` (default: nothing) receives
    a printable block each time, so the script decides where samples go.
    """

    def __init__(self, vocab, prompt, temperatures=(0.2, 0.5, 1.0), length=200, every=1, window=64,
                 seed=0, write=None):
        self.vocab, self.prompt, self.temperatures = vocab, prompt, tuple(temperatures)
        self.length, self.every, self.window = length, every, window
        self.rng = np.random.default_rng(seed)
        self.write = write
        self.samples: list = []

    def sample(self, epoch):
        texts = generate(self.model, self.vocab, self.prompt, self.length, self.temperatures, self.rng, self.window)
        self.samples.append((epoch, dict(zip(self.temperatures, texts))))
        if self.write is not None:
            lines = [f"--- samples after epoch {epoch}, prompt {self.prompt!r}"]
            lines += [f"[T={t}] {s!r}" for t, s in zip(self.temperatures, texts)]
            self.write("\n".join(lines))

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every == 0 or epoch == self.session.fit_params["epochs"]:
            self.sample(epoch)


def build_model(vocab_size: int, embed: int, units: int) -> Model:
    return Model([layers.Embedding(vocab_size, embed),
                  layers.LSTM(units, return_sequences=True),
                  layers.Dense(vocab_size, activation="softmax")]).assemble()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text", default=None, help="a UTF-8 text file (default: Python's pydoc topics)")
    p.add_argument("--limit", type=int, default=0, help="use the first LIMIT characters (0: all)")
    p.add_argument("--seq-len", type=int, default=64, help="characters per training sequence")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    p.add_argument("--sample-len", type=int, default=200)
    p.add_argument("--sample-every", type=int, default=5)
    p.add_argument("--report", default="reports/text_generation.png")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)
    if args.seq_len < 2 or args.sample_len < 1 or args.sample_every < 1 or min(args.temperatures) <= 0:
        p.error("--seq-len must be >= 2, --sample-len and --sample-every >= 1, temperatures > 0")

    cutedl.set_seed(args.seed)
    text = load_text(args.text, args.limit or None)
    vocab = Vocabulary(text)
    ids = vocab.encode(text)
    split = int(len(ids) * 0.9)  # the last 10% of the text is held out
    x_train, y_train = windows(ids[:split], args.seq_len)
    x_val, y_val = windows(ids[split:], args.seq_len)
    if len(x_train) == 0 or len(x_val) == 0:
        p.error(f"the text ({len(text)} characters) is too short for --seq-len {args.seq_len}")
    model = build_model(len(vocab), args.embed, args.units)
    if args.verbose:
        print(f"{len(text):,} characters, vocabulary of {len(vocab)}; {len(x_train)} training and "
              f"{len(x_val)} validation sequences of {args.seq_len}")
        print(model.summary())
    sess = Session(model, loss="sparse_categorical_crossentropy",
                   optimizer=optimizers.Adam(args.lr, clipnorm=5.0), metrics=["accuracy"])
    prompt = vocab.decode(ids[split:split + min(32, args.seq_len)])
    sampler = SampleText(vocab, prompt, args.temperatures, args.sample_len, args.sample_every,
                         window=args.seq_len, seed=args.seed, write=print if args.verbose else None)

    def perplexity_panel(ax):
        h = sess.history
        for key, color in (("loss", "tab:blue"), ("val_loss", "tab:orange")):
            if key in h.history:
                ax.plot(h["step"], np.exp(h[key]), color=color, marker=".", label=f"exp({key})")
        ax.set_xlabel("step")
        ax.set_ylabel("perplexity (characters)")
        ax.legend(fontsize=8)

    def samples_panel(ax):
        ax.axis("off")
        if not sampler.samples:
            ax.text(0, 1, "no samples yet", va="top", fontsize=8)
            return
        epoch, texts = sampler.samples[-1]
        lines = [f"after epoch {epoch}, prompt: {prompt!r}"]
        for t, s in texts.items():
            lines.append(f"T={t}: " + " ".join(s[:90].split()))
        ax.text(0, 1, "\n\n".join(lines), va="top", fontsize=7, family="monospace", wrap=True)

    report = listeners.FitReport(args.report, title=f"Character LSTM({args.units}) language model",
                                 panels=[("perplexity", perplexity_panel), ("samples", samples_panel)])
    # ProgressBar first, so each epoch's line comes before that epoch's samples.
    chosen = ([listeners.ProgressBar()] if args.verbose else []) + [sampler, report]
    t0 = time.perf_counter()
    history = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size), epochs=args.epochs,
                       val_data=Dataset(x_val, y_val, batch_size=256, shuffle=False),
                       listeners=chosen, verbose=args.verbose)
    seconds = time.perf_counter() - t0
    val_loss = history["val_loss"][-1]
    print(f"validation loss {val_loss:.4f} nats/char, perplexity {math.exp(val_loss):.2f}, "
          f"accuracy {history['val_accuracy'][-1]:.3f}; {seconds:.0f}s; report {args.report}")
    return {"history": history, "val_loss": val_loss, "val_perplexity": math.exp(val_loss),
            "samples": sampler.samples, "vocab_size": len(vocab), "seconds": seconds, "report": args.report}


if __name__ == "__main__":
    main()
