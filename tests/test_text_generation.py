"""The text_generation example's pieces: vocabulary, next-character windows, sampling, --text."""
import numpy as np
import pytest

from test_examples import load_example


@pytest.fixture(scope="module")
def tg():
    return load_example("text_generation")


def test_vocabulary_and_windows(tg):
    vocab = tg.Vocabulary("abcab c")
    assert vocab.chars == [" ", "a", "b", "c"] and len(vocab) == 4
    ids = vocab.encode("cab a?")  # '?' is not in the vocabulary: dropped
    np.testing.assert_array_equal(ids, [3, 1, 2, 0, 1])
    assert vocab.decode(ids) == "cab a"
    x, y = tg.windows(np.arange(11), 3)
    np.testing.assert_array_equal(x, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(y, x + 1)  # each target is the next character


def test_low_temperature_sampling_is_greedy_decoding(tg):
    vocab = tg.Vocabulary("abcdefgh")
    model = tg.build_model(len(vocab), 4, 6)
    rng = np.random.default_rng(0)
    got = tg.generate(model, vocab, "abc", 8, [1e-4, 1.0], rng, window=5)
    assert [len(s) for s in got] == [8, 8] and set("".join(got)) <= set(vocab.chars)
    ids = list(vocab.encode("abc"))
    for _ in range(8):  # greedy reference: argmax of the next-character probabilities
        p = model.predict(np.array([ids[-5:]]))[0, -1]
        ids.append(int(np.argmax(p)))
    assert got[0] == vocab.decode(ids[3:])


def test_trains_on_a_given_text_file(tg, tmp_path, capsys):
    text = tmp_path / "poem.txt"
    text.write_text("the cat sat on the mat. " * 80, encoding="utf-8")
    result = tg.main(["--text", str(text), "--epochs", "4", "--batch-size", "8", "--seq-len", "12", "--units", "16",
                      "--lr", "0.02", "--sample-len", "10", "--sample-every", "2", "--report", str(tmp_path / "r.png")])
    assert result["vocab_size"] == len(set("the cat sat on the mat. "))
    assert [epoch for epoch, _ in result["samples"]] == [2, 4]
    assert result["val_perplexity"] < 3.0  # a repeated sentence is easy to predict (10 characters)
    out = capsys.readouterr().out
    assert "--- samples after epoch 4" in out and "[T=0.2]" in out
