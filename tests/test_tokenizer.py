"""The tokenizer must give the ids and token types transformers gives on the same files.

transformers is the reference here (a test-only dependency): every source shape minifreeze reads —
tokenizer.json, a bare BERT vocab.txt, a RoBERTa vocab.json + merges.txt — is compared with what
`transformers` builds from the same folder, on text chosen to hit the pipeline's corners (casing,
accents, CJK, emoji, special-token text, whitespace runs, empty strings, truncation of pairs).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from _hubcache import copy_folder_files, make_hub_cache, use_offline_cache
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers, trainers

from minifreeze.errors import MinifreezeError
from minifreeze.tokenizer import load_tokenizer

transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello World! The movie was GREAT.",
    "Héllo naïve café — déjà vu, 東京 and 🤖 emoji",
    "[MASK] tokens [SEP] inside text [CLS] and <s> </s> <mask>",
    "   leading and  multiple   spaces\tand\ttabs\nnewline",
    "",
    "an unbelievably incomprehensible antidisestablishmentarianism sentence " * 8,
    "x",
]
PAIRS = [
    "a short pair",
    "second sentence, longer than the first one by a good margin " * 5,
    "",
    "tabs\tin\tpair",
    "non-empty pair for an empty text",
    "short",
    "the pair is much longer than the text itself " * 12,
]


def reference(tokenizer, texts, pairs=None, max_length=512, token_types=True):
    """transformers' ids and token types, in the shape Tokenizer.encode returns."""
    encoded = tokenizer(
        texts, pairs, truncation=True, max_length=max_length, return_token_type_ids=token_types
    )
    types = encoded["token_type_ids"] if token_types else [[0] * len(ids) for ids in encoded["input_ids"]]
    return encoded["input_ids"], types


def assert_same_as_transformers(ours, theirs, max_lengths=(512, 24, 9), token_types=True):
    for max_length in max_lengths:
        for pairs in (None, PAIRS):
            got = ours.encode(TEXTS, pairs, max_length=max_length)
            ids, types = reference(theirs, TEXTS, pairs, max_length, token_types)
            assert got.input_ids == ids, (max_length, pairs is not None)
            assert got.token_type_ids == types, (max_length, pairs is not None)
            assert all(len(row) <= max_length for row in got.input_ids)


def test_minilm_matches_transformers(minilm_dir):
    ours = load_tokenizer(minilm_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    assert_same_as_transformers(ours, theirs)
    assert ours.pad_id == theirs.pad_token_id == 0
    assert ours.vocab_size == len(theirs) == 30522
    assert ours.model_max_length == theirs.model_max_length == 512
    assert ours.has_token_types


def test_minilm_ignores_the_padding_and_truncation_saved_in_tokenizer_json(minilm_dir):
    """MiniLM's tokenizer.json pads to 128 and truncates at 128; the batcher pads, the caller truncates."""
    encoded = load_tokenizer(minilm_dir).encode(["short", "word " * 300], max_length=200)
    assert len(encoded.input_ids[0]) == 3
    assert len(encoded.input_ids[1]) == 200


def test_pairs_truncate_longest_first(minilm_dir):
    ours = load_tokenizer(minilm_dir)
    encoded = ours.encode(["one two three four five six seven"], ["a"], max_length=6)
    ids = encoded.input_ids[0]
    assert len(ids) == 6 and ids.count(102) == 2  # [CLS] one two [SEP] a [SEP]: only the longer side shrinks
    assert encoded.token_type_ids[0] == [0, 0, 0, 0, 1, 1]


def write_wordpiece_folder(folder: Path, do_lower_case: bool | None) -> Path:
    """A vocab.txt-only BERT folder: the fallback when no tokenizer.json exists."""
    words = ["hello", "world", "the", "movie", "was", "great", "un", "##believ", "##ably", "##s", "a", "x"]
    words += ["Hello", "World", "The", "GREAT", "caf", "##é", "naive", "cafe", "東", "京", "!", ".", ",", "—"]
    words += ["token", "inside", "text", "and", "short", "pair", "<", ">", "/", "s", "mask"]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(specials + words) + "\n", encoding="utf-8")
    if do_lower_case is not None:
        config = {"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer"}
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize("do_lower_case", [True, False, None])
def test_wordpiece_vocab_txt_matches_transformers(tmp_path, do_lower_case):
    folder = write_wordpiece_folder(tmp_path / "wp", do_lower_case)
    ours = load_tokenizer(folder)
    theirs = transformers.BertTokenizer.from_pretrained(folder)
    assert_same_as_transformers(ours, theirs)
    assert ours.pad_id == theirs.pad_token_id == 0
    assert ours.vocab_size == len(theirs)
    assert ours.has_token_types


def write_bpe_folder(folder: Path) -> Path:
    """Train a tiny byte-level BPE (RoBERTa's scheme) and keep only vocab.json + merges.txt."""
    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello World, the movie was great!"] * 4
    corpus += ["naïve café déjà vu", "multiple   spaces\tand\ttabs", "pairs of sentences, longer than others"]
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    backend.model.save(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "vocab.json"]
    return folder


def test_byte_level_bpe_vocab_json_merges_matches_roberta(tmp_path):
    folder = write_bpe_folder(tmp_path / "bpe")
    ours = load_tokenizer(folder)
    theirs = transformers.RobertaTokenizer.from_pretrained(folder)
    assert not ours.has_token_types  # RoBERTa has no segment embedding: type ids are all 0
    assert_same_as_transformers(ours, theirs, token_types=False)
    assert ours.encode(["a"], ["b"]).input_ids[0].count(theirs.sep_token_id) == 3  # <s> A </s></s> B </s>
    assert ours.pad_id == theirs.pad_token_id == 1
    assert ours.vocab_size == len(theirs)


def test_saved_tokenizer_reloads_in_transformers_and_here(minilm_dir, tmp_path):
    ours = load_tokenizer(minilm_dir)
    saved = ours.save(tmp_path / "saved")
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in saved.iterdir()
    }
    theirs = transformers.AutoTokenizer.from_pretrained(saved)
    assert_same_as_transformers(ours, theirs)
    assert_same_as_transformers(load_tokenizer(saved), theirs)
    assert theirs.model_max_length == 512 and theirs.pad_token == "[PAD]"


def test_saved_bpe_tokenizer_keeps_no_token_types(tmp_path):
    bpe = load_tokenizer(write_bpe_folder(tmp_path / "bpe"))
    saved = bpe.save(tmp_path / "saved")
    theirs = transformers.AutoTokenizer.from_pretrained(saved)
    assert "token_type_ids" not in theirs(["a"], ["b"])
    assert_same_as_transformers(bpe, theirs, token_types=False)
    reloaded = load_tokenizer(saved)
    assert not reloaded.has_token_types and reloaded.pad_id == bpe.pad_id


@pytest.mark.parametrize(
    ("model_type", "expected"), [("bert", True), ("distilbert", False), ("roberta", False)]
)
def test_token_types_follow_the_model_config(tmp_path, model_type, expected):
    folder = write_wordpiece_folder(tmp_path / "wp", do_lower_case=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    tokenizer = load_tokenizer(folder)
    assert tokenizer.has_token_types is expected
    types = tokenizer.encode(["hello"], ["world"]).token_type_ids[0]
    assert any(types) is expected
    assert load_tokenizer(folder, has_token_types=not expected).has_token_types is (not expected)


def test_folder_without_tokenizer_files_names_the_fix(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(
        MinifreezeError,
        match=r"no tokenizer in .*expected tokenizer.json, vocab.txt or vocab.json\+merges.txt",
    ):
        load_tokenizer(tmp_path)


def test_vocab_json_without_merges_is_not_a_tokenizer(tmp_path):
    (tmp_path / "vocab.json").write_text('{"<pad>": 0}', encoding="utf-8")
    with pytest.raises(MinifreezeError, match="no tokenizer in"):
        load_tokenizer(tmp_path)


def test_a_file_path_is_rejected_with_a_fix(tmp_path):
    file = tmp_path / "tokenizer.json"
    file.write_text("{}", encoding="utf-8")
    with pytest.raises(MinifreezeError, match="is a file: pass the folder"):
        load_tokenizer(file)


def test_encode_rejects_mismatched_pairs(minilm_dir):
    with pytest.raises(MinifreezeError, match="2 texts but 1 pairs"):
        load_tokenizer(minilm_dir).encode(["a", "b"], ["c"])


def test_hub_id_loads_from_an_offline_cache(minilm_dir, tmp_path, monkeypatch):
    wanted = {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "config.json",
    }
    files = {name: src for name, src in copy_folder_files(minilm_dir).items() if name in wanted}
    cache = tmp_path / "hub"
    make_hub_cache(cache, "someone/tiny-bert", files)  # not the default model: no bundled fallback
    use_offline_cache(monkeypatch, cache)
    tokenizer = load_tokenizer("someone/tiny-bert")
    assert tokenizer.encode(["Hello world"]).input_ids == [[101, 7592, 2088, 102]]


def test_hub_id_missing_offline_raises_a_one_line_fix(tmp_path, monkeypatch):
    use_offline_cache(monkeypatch, tmp_path / "empty-cache")
    with pytest.raises(MinifreezeError) as error:
        load_tokenizer("nobody/no-such-model")
    assert "nobody/no-such-model" in str(error.value) and "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------------
# The calling convention transformers users type: tokenizer(texts, padding=..., return_tensors="pt")

CALLS = [
    (("Hello World!",), {}),
    ((TEXTS,), dict(padding=True)),
    ((TEXTS, PAIRS), dict(padding=True, truncation=True, max_length=24)),
    (("a first text", "its pair"), {}),
    (([("one", "two"), ("three four five", "six")],), dict(padding=True, return_tensors="pt")),
    ((TEXTS,), dict(padding=True, truncation=True, return_tensors="pt")),
    ((TEXTS,), dict(max_length=9)),  # max_length alone truncates, as in transformers
    ((["short", "a bit"],), dict(padding="max_length", max_length=12, return_tensors="pt")),
    ((TEXTS,), dict(padding=True, max_length=9)),  # ... but not together with padding
    (("one text",), dict(return_tensors="pt")),
    ((TEXTS,), dict(padding="longest", truncation="longest_first", max_length=7, return_tensors="np")),
]


def assert_calls_match(ours, theirs):
    import numpy as np
    import torch

    for args, kwargs in CALLS:
        with warnings.catch_warnings():  # transformers notes that max_length without truncation is unused
            warnings.simplefilter("ignore")
            expected = theirs(*args, **kwargs)
        got = ours(*args, **kwargs)
        assert list(got) == list(expected), (args, kwargs)
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert isinstance(got[key], torch.Tensor) and torch.equal(got[key], value), key
            elif isinstance(value, np.ndarray):
                assert np.array_equal(got[key], value), key
            else:
                assert got[key] == value, (key, kwargs)


def test_calling_the_tokenizer_matches_transformers(minilm_dir):
    ours = load_tokenizer(minilm_dir)
    assert_calls_match(ours, transformers.AutoTokenizer.from_pretrained(minilm_dir))
    assert ours.pad_token_id == 0


def test_calling_matches_for_wordpiece_and_bpe_folders(tmp_path):
    wordpiece = write_wordpiece_folder(tmp_path / "wp", do_lower_case=True)
    assert_calls_match(load_tokenizer(wordpiece), transformers.BertTokenizer.from_pretrained(wordpiece))
    bpe = write_bpe_folder(tmp_path / "bpe")
    theirs = transformers.RobertaTokenizer.from_pretrained(bpe)
    assert_calls_match(load_tokenizer(bpe), theirs)  # no token_type_ids key: RoBERTa has none
    assert load_tokenizer(bpe).pad_token_id == theirs.pad_token_id == 1


def test_a_batch_feeds_the_model_and_moves_to_a_device(minilm_dir):
    import torch

    import minifreeze

    batch = load_tokenizer(minilm_dir)(["a gripping film", "dull"], padding=True, return_tensors="pt")
    assert batch.input_ids is batch["input_ids"] and batch.to("cpu")["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
    ]
    model = minifreeze.load_model(minilm_dir).eval()
    with torch.no_grad():
        assert model(**batch).shape == (2, 2)


def test_a_bare_string_is_one_text(minilm_dir):
    tokenizer = load_tokenizer(minilm_dir)
    assert tokenizer.encode("Hello world").input_ids == [[101, 7592, 2088, 102]]
    assert tokenizer.encode("Hello", "world").input_ids == [[101, 7592, 102, 2088, 102]]
    assert tokenizer("Hello world")["input_ids"] == [101, 7592, 2088, 102]
    with pytest.raises(MinifreezeError, match="2 texts but 1 pairs"):
        tokenizer.encode(["a", "b"], "c")


def test_unequal_rows_make_no_tensor_without_padding(minilm_dir):
    with pytest.raises(MinifreezeError, match="pass padding=True"):
        load_tokenizer(minilm_dir)(["a", "a longer text"], return_tensors="pt")
    with pytest.raises(MinifreezeError, match="return_tensors='tf'"):
        load_tokenizer(minilm_dir)("a", return_tensors="tf")
    with pytest.raises(MinifreezeError, match="padding='left'"):
        load_tokenizer(minilm_dir)("a", padding="left")


def test_decode_matches_transformers(minilm_dir):
    import torch

    ours, theirs = load_tokenizer(minilm_dir), transformers.AutoTokenizer.from_pretrained(minilm_dir)
    ids = theirs(TEXTS[:4])["input_ids"]
    for row in ids:
        for skip in (False, True):
            assert ours.decode(row, skip_special_tokens=skip) == theirs.decode(row, skip_special_tokens=skip)
    assert ours.decode(torch.tensor(ids[0])) == theirs.decode(ids[0])
    assert ours.batch_decode(ids, skip_special_tokens=True) == theirs.batch_decode(
        ids, skip_special_tokens=True
    )


@pytest.mark.parametrize("shape", ["minilm", "wordpiece", "bpe"])
def test_save_pretrained_reloads_with_identical_ids(minilm_dir, tmp_path, shape):
    source = {
        "minilm": lambda: minilm_dir,
        "wordpiece": lambda: write_wordpiece_folder(tmp_path / "wp", do_lower_case=False),
        "bpe": lambda: write_bpe_folder(tmp_path / "bpe"),
    }[shape]()
    ours = load_tokenizer(source)
    ours.save_pretrained(tmp_path / "saved")
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in (tmp_path / "saved").iterdir()
    }
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert_calls_match(load_tokenizer(tmp_path / "saved"), theirs)
    assert_calls_match(ours, theirs)


def write_model_config(folder: Path, **fields) -> None:
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", **fields}), encoding="utf-8")


def test_max_length_is_capped_at_the_models_positions_with_a_warning(tmp_path):
    """A max_length beyond the position table used to be an IndexError deep in the embedding."""
    folder = write_wordpiece_folder(tmp_path / "wp", do_lower_case=True)
    write_model_config(folder, max_position_embeddings=16)
    tokenizer = load_tokenizer(folder)
    assert tokenizer.max_positions == 16 and tokenizer.model_max_length == 16
    with pytest.warns(UserWarning, match="max_length 600 is more than the model's 16 positions"):
        encoded = tokenizer.encode(["the movie " * 50], max_length=600)
    assert len(encoded.input_ids[0]) == 16
    assert len(tokenizer("the movie " * 50, truncation=True)["input_ids"]) == 16
    with pytest.raises(MinifreezeError, match="max_length must be at least 1"):
        tokenizer.encode("x", max_length=0)


def test_roberta_positions_leave_out_the_padding_offset(tmp_path):
    folder = write_bpe_folder(tmp_path / "bpe")
    (folder / "config.json").write_text(
        json.dumps({"model_type": "roberta", "max_position_embeddings": 20, "pad_token_id": 1}),
        encoding="utf-8",
    )
    assert load_tokenizer(folder).max_positions == 18


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused(tmp_path):
    folder = write_wordpiece_folder(tmp_path / "wp", do_lower_case=True)
    write_model_config(folder, vocab_size=20)  # the vocab.txt holds 42 tokens
    with pytest.raises(MinifreezeError, match="tokenizer has 42 tokens but the model's embedding only 20"):
        load_tokenizer(folder)


def test_a_training_run_folder_points_at_its_model(tmp_path):
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "summary.json").write_text("{}", encoding="utf-8")
    (tmp_path / "run" / "config.json").write_text('{"freeze": "2"}', encoding="utf-8")
    with pytest.raises(MinifreezeError, match=r"run is a training run folder; use --model .*run/model$"):
        load_tokenizer(tmp_path / "run")


def test_empty_text_and_empty_batch(minilm_dir):
    tokenizer = load_tokenizer(minilm_dir)
    assert tokenizer("")["input_ids"] == [101, 102]
    assert tokenizer([], padding=True)["input_ids"] == []
    assert tuple(tokenizer([], padding=True, return_tensors="pt")["input_ids"].shape) == (0, 0)
