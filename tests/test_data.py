"""Data validation, statistics and splitting on small files written by the tests."""

import itertools
import json
import random

import pytest

from lqkbert import data
from lqkbert.data import (
    find_near_duplicates,
    jaccard,
    char_trigrams,
    label_counts,
    load_valid_rows,
    stratified_split,
    validate_files,
)


GOOD = {
    "text": "비트 가즈아 🚀",
    "sentiment_strength": "strong_pos",
    "action_signal": "buy",
    "emotions": ["greed", "confidence"],
    "certainty": 0.9,
    "relevance": 0.95,
    "toxicity": 0.0,
}


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def row(**changes):
    record = {**GOOD, **changes}
    return json.dumps({key: value for key, value in record.items() if value is not ...}, ensure_ascii=False)


def problems_of(tmp_path, line):
    path = write_lines(tmp_path / "rows.jsonl", [line])
    return validate_files([path]).problems


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"text": "비트"', "rows.jsonl:1: invalid JSON"),
        ('["비트"]', "rows.jsonl:1: a row must be a JSON object, got list"),
        (row(text=...), "rows.jsonl:1: field 'text' is missing"),
        (row(text="   "), "rows.jsonl:1: field 'text' is empty"),
        (row(text=42), "rows.jsonl:1: field 'text' must be a string, got 42"),
        (row(text="가" * 201), "rows.jsonl:1: field 'text' has 201 characters, over the limit of 200"),
        (row(sentiment_strength="very_pos"), "field 'sentiment_strength' has unknown label 'very_pos'; valid labels: ['strong_pos'"),
        (row(action_signal="Buy"), "field 'action_signal' has unknown label 'Buy'; valid labels: ['buy'"),
        (row(emotions="greed"), "field 'emotions' must be a list of emotion names, got 'greed'"),
        (row(emotions=["greed", "joy"]), "field 'emotions' has unknown emotions ['joy']; valid names: ['greed'"),
        (row(emotions=["fear", "fear"]), "field 'emotions' repeats ['fear']; list each emotion once"),
        (row(certainty=1.5), "field 'certainty' must be a number in [0, 1], got 1.5"),
        (row(relevance=-0.1), "field 'relevance' must be a number in [0, 1], got -0.1"),
        (row(toxicity="high"), "field 'toxicity' must be a number in [0, 1], got 'high'"),
        (row(toxicity=True), "field 'toxicity' must be a number in [0, 1], got True"),
        ('{"text": "비트", "certainty": NaN}', "field 'certainty' must be a number in [0, 1], got nan"),
    ],
)
def test_bad_row_reported(tmp_path, line, expected):
    problems = problems_of(tmp_path, line)

    assert len(problems) == 1
    assert expected in problems[0]


def test_missing_labels_allowed_and_counted(tmp_path):
    path = write_lines(tmp_path / "partial.jsonl", [
        row(),
        json.dumps({"text": "이더 존버", "action_signal": "hold"}, ensure_ascii=False),
        json.dumps({"text": "리플 손절", "sentiment_strength": None, "emotions": None}, ensure_ascii=False),
    ])

    report = validate_files([path])

    assert report.problems == []
    assert report.missing["sentiment_strength"] == 2
    assert report.missing["action_signal"] == 1
    assert report.missing["emotions"] == 2
    assert report.missing["toxicity"] == 2
    assert "missing labels: sentiment_strength 2, action_signal 1, emotions 2" in report.summary()


def test_duplicates_within_and_across_files(tmp_path):
    first = write_lines(tmp_path / "a.jsonl", [row(text="비트코인 오늘 진짜 많이 올랐다"), row(text="도지 떡상")])
    second = write_lines(tmp_path / "b.jsonl", [
        row(text="비트코인  오늘 진짜 많이 올랐다 "),
        row(text="비트코인 오늘 진짜 많이 올랐다!"),
        row(text="솔라나 조정 올 듯"),
    ])

    problems = validate_files([first, second]).problems

    assert len(problems) == 2
    assert problems[0].startswith(f"{second}:1: exact duplicate of {first}:1")
    assert problems[1].startswith(f"{second}:2: near duplicate (trigram Jaccard 0.94 >= 0.8) of {first}:1")


def test_near_duplicates_match_brute_force():
    generator = random.Random(7)
    alphabet = "비트코인가즈아떡상락존버 ㅋㅠ"
    texts = ["".join(generator.choice(alphabet) for _ in range(generator.randint(2, 12))) for _ in range(300)]
    texts += [text + "ㅋ" for text in texts[:60]]

    expected = []
    for i, j in itertools.combinations(range(len(texts)), 2):
        similarity = jaccard(char_trigrams(texts[i]), char_trigrams(texts[j]))
        if similarity >= 0.8:
            expected.append((i, j))

    assert expected
    assert [(i, j) for i, j, _ in find_near_duplicates(texts, 0.8)] == expected


def test_csv_rows_parsed(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(
        "id,text,sentiment_strength,action_signal,emotions,certainty,relevance,toxicity\n"
        "1,비트 가즈아,strong_pos,buy,greed|confidence,0.9,0.95,0\n"
        '2,"이더, 존버",,hold,[],,0.8,\n'
        "3,리플 손절,weak_neg,sell,fear;anger,0.7,1,0.2\n"
        "4,도지,strong_pos,moon,,0.5,0.5,0.1\n",
        encoding="utf-8",
    )

    report = validate_files([path])

    assert [row.fields["emotions"] for row in report.rows] == [["greed", "confidence"], [], ["fear", "anger"], None]
    assert report.rows[1].fields["text"] == "이더, 존버"
    assert report.rows[1].fields["sentiment_strength"] is None
    assert report.rows[1].fields["relevance"] == 0.8
    assert report.problems == [
        f"{path}:5: field 'action_signal' has unknown label 'moon'; valid labels: "
        "['buy', 'hold', 'sell', 'avoid', 'info_only', 'ask_info']"
    ]


def test_csv_without_text_column_rejected(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("sentence,sentiment_strength\n비트,neutral\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"has no 'text' column in its header \['sentence', 'sentiment_strength'\]"):
        validate_files([path])


def test_unsupported_extension_rejected(tmp_path):
    path = write_lines(tmp_path / "rows.txt", ["비트"])

    with pytest.raises(ValueError, match=r"Unsupported data file .*rows.txt: use .jsonl"):
        validate_files([path])


def test_load_valid_rows_drops_nothing(tmp_path):
    path = write_lines(tmp_path / "rows.jsonl", [row(), row(text="이더", certainty=3), row(text="리플")])

    with pytest.raises(data.DataError) as raised:
        load_valid_rows([path])

    assert "3 rows, 2 valid, 1 invalid" in str(raised.value)
    assert f"{path}:2: field 'certainty' must be a number in [0, 1], got 3" in str(raised.value)


def test_label_counts_bands_and_missing():
    records = [
        {**GOOD, "certainty": 0.2, "relevance": 0.3, "toxicity": 0.5},
        {**GOOD, "emotions": [], "certainty": 1.0, "relevance": 0.0, "toxicity": 0.0},
        {"text": "도지"},
    ]

    counts = label_counts(records)

    assert counts["rows"] == 3
    assert counts["sentiment_strength=strong_pos"] == 2
    assert counts["sentiment_strength missing"] == 1
    assert counts["emotions has greed"] == 1
    assert counts["emotions empty"] == 1
    assert counts["emotions missing"] == 1
    assert counts["certainty in [0.20, 0.40)"] == 1
    assert counts["certainty in [0.80, 1.00]"] == 1
    assert counts["relevance in [0.30, 0.40)"] == 1
    assert counts["toxicity >= 0.5"] == 1
    assert counts["relevance <= 0.3"] == 2
    assert counts["text length max"] == len(GOOD["text"])


def test_stratified_split_keeps_strata_and_sizes():
    records = [
        {"text": f"{sentiment} {action} {n}", "sentiment_strength": sentiment, "action_signal": action}
        for sentiment in ("strong_pos", "neutral") for action in ("buy", "info_only") for n in range(20)
    ]

    train, dev, test = stratified_split(records, (0.8, 0.1, 0.1), seed=1)

    assert (len(train), len(dev), len(test)) == (64, 8, 8)
    assert sorted(r["text"] for r in train + dev + test) == sorted(r["text"] for r in records)
    for part, per_stratum in ((train, 16), (dev, 2), (test, 2)):
        strata = {(r["sentiment_strength"], r["action_signal"]) for r in part}
        assert len(strata) == 4
        for stratum in strata:
            assert sum((r["sentiment_strength"], r["action_signal"]) == stratum for r in part) == per_stratum
    assert stratified_split(records, (0.8, 0.1, 0.1), seed=1) == [train, dev, test]


def test_stratified_split_rejects_bad_ratios():
    with pytest.raises(ValueError, match=r"Invalid split ratios \[0.8, 0.3\]: use non-negative numbers that add up to 1"):
        stratified_split([], (0.8, 0.3))


def test_validate_command_exit_codes(tmp_path, capsys):
    good = write_lines(tmp_path / "good.jsonl", [row(), row(text="이더 존버 중")])
    bad = write_lines(tmp_path / "bad.jsonl", [row(text="리플 가즈아"), row(text="도지", action_signal="moon")])

    assert data.main(["validate", str(good)]) == 0
    assert capsys.readouterr().out.strip() == "OK: 2 rows, 2 valid, 0 invalid (0 problems); missing labels: none"

    assert data.main(["validate", str(good), str(bad)]) == 1
    output = capsys.readouterr().out.splitlines()
    assert output[0] == (
        f"{bad}:2: field 'action_signal' has unknown label 'moon'; valid labels: "
        "['buy', 'hold', 'sell', 'avoid', 'info_only', 'ask_info']"
    )
    assert output[-1] == "FAILED: 4 rows, 3 valid, 1 invalid (1 problems); missing labels: none"


def test_stats_command_table(tmp_path, capsys):
    path = write_lines(tmp_path / "good.jsonl", [row(), row(text="이더 존버 중", action_signal="hold")])

    assert data.main(["stats", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert lines[0] == "| label | good.jsonl |"
    assert "| action_signal=hold | 1 |" in lines
    assert "| emotions has greed | 2 |" in lines


def test_split_command_refuses_overwrite(tmp_path, capsys):
    source = write_lines(tmp_path / "all.jsonl", [row(text=f"비트 {n}번째 글 ㅋㅋ 오늘도 가즈아 {n * 7}") for n in range(10)])
    output_dir = tmp_path / "out"

    assert data.main(["split", str(source), "--output-dir", str(output_dir), "--seed", "3"]) == 0
    assert sum(len((output_dir / f"{name}.jsonl").read_text().splitlines()) for name in ("train", "dev", "test")) == 10

    with pytest.raises(SystemExit, match="Refusing to overwrite"):
        data.main(["split", str(source), "--output-dir", str(output_dir)])
