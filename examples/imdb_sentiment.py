"""IMDB review sentiment: Embedding(mask_zero) -> Bidirectional LSTM (or GRU) -> sigmoid.

Reviews keep their own length: a bucketing SequenceDataset batches reviews of similar length and
pads each batch only to its longest review, and the padding is masked, so it changes nothing.

Needs Keras's ``imdb.npz`` (17 MB), which this script does not download when there is no
network: it says where to put the file and exits. With the file in place:

    python examples/imdb_sentiment.py                      # 20,000-word vocabulary, reviews cut to 200 words
    python examples/imdb_sentiment.py --cell gru --epochs 3
    python examples/imdb_sentiment.py --data ~/Downloads/imdb.npz --limit 2000 --epochs 1   # a quick run
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import cutedl
from cutedl import Model, Session, datasets, layers, listeners, optimizers
from cutedl.data import SequenceDataset


def build_model(num_words: int, embed: int, units: int, cell: str) -> Model:
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
    return Model([layers.Embedding(num_words, embed, mask_zero=True),
                  layers.Bidirectional(rnn(units)),
                  layers.Dense(1, activation="sigmoid")]).assemble()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="imdb.npz or its directory (default: search, then download)")
    p.add_argument("--num-words", type=int, default=20000, help="vocabulary: the most frequent words")
    p.add_argument("--maxlen", type=int, default=200, help="keep the last MAXLEN words of each review")
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--units", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="use only this many training (and test) reviews")
    p.add_argument("--report", default="reports/imdb_sentiment.png")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    try:
        (x_train, y_train), (x_test, y_test) = datasets.imdb.load_data(args.data, num_words=args.num_words)
    except (datasets.DownloadError, FileNotFoundError) as err:
        how = "" if datasets.imdb.HOW_TO_GET in str(err) else f"\n{datasets.imdb.HOW_TO_GET}"
        print(f"IMDB data not available: {err}{how}\nThen run this script again.")
        return {"status": "no data", "how_to_get": datasets.imdb.HOW_TO_GET}

    cutedl.set_seed(args.seed)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        x_test, y_test = x_test[:args.limit], y_test[:args.limit]
    y_train = y_train.astype(np.float32).reshape(-1, 1)
    y_test = y_test.astype(np.float32).reshape(-1, 1)
    n_val = max(len(x_train) // 10, 1)  # the last 10% of the (shuffled) training reviews
    batches = dict(maxlen=args.maxlen, truncating="pre")
    train = SequenceDataset(x_train[:-n_val], y_train[:-n_val], batch_size=args.batch_size, seed=args.seed, **batches)
    val = SequenceDataset(x_train[-n_val:], y_train[-n_val:], batch_size=256, shuffle=False, **batches)
    test = SequenceDataset(x_test, y_test, batch_size=256, shuffle=False, **batches)

    model = build_model(args.num_words, args.embed, args.units, args.cell)
    if args.verbose:
        lengths = train.lengths
        print(f"{train.num_samples} training, {val.num_samples} validation, {test.num_samples} test reviews; "
              f"median length {int(np.median(lengths))} words, cut to the last {args.maxlen}")
        print(model.summary())
    sess = Session(model, loss="binary_crossentropy", optimizer=optimizers.Adam(args.lr, clipnorm=5.0),
                   metrics=["accuracy"])
    t0 = time.perf_counter()
    history = sess.fit(train, epochs=args.epochs, val_data=val,
                       listeners=[listeners.EarlyStopping("val_loss", patience=1),
                                  listeners.FitReport(args.report, title=f"IMDB sentiment, Embedding + "
                                                      f"Bidirectional {args.cell.upper()}({args.units})")],
                       verbose=args.verbose)
    seconds = time.perf_counter() - t0
    result = sess.evaluate(test)
    print(f"test accuracy {result['accuracy']:.4f}  test loss {result['loss']:.4f}  "
          f"epochs {history.stopped_epoch}  time {seconds:.0f}s  report {args.report}")
    return {"status": "trained", "test_accuracy": result["accuracy"], "test_loss": result["loss"],
            "history": history, "seconds": seconds, "report": args.report}


if __name__ == "__main__":
    main()
