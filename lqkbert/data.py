"""Labeled data: reading JSONL and CSV files, row validation, duplicate detection, label statistics and splits.

One row is one sentence with the model card's output keys: `text`, `sentiment_strength`, `action_signal`,
`emotions` (a list, possibly empty), `certainty`, `relevance` and `toxicity`. Every label field may be missing (absent,
`null`, or an empty CSV cell), because training masks missing labels; `text` may not. Other fields, such as `id`, are
kept and ignored.
"""

import argparse
import collections
import csv
import json
import math
import os
import random
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


TEXT_FIELD = "text"
SENTIMENT_FIELD = "sentiment_strength"
ACTION_FIELD = "action_signal"
EMOTIONS_FIELD = "emotions"
SCORE_FIELDS = ["certainty", "relevance", "toxicity"]
LABEL_FIELDS = [SENTIMENT_FIELD, ACTION_FIELD, EMOTIONS_FIELD, *SCORE_FIELDS]

# The model card's label orders; `LabelSchema.from_config` reads other orders from a model's config.
SENTIMENT_LABELS = ["strong_pos", "weak_pos", "neutral", "weak_neg", "strong_neg"]
ACTION_LABELS = ["buy", "hold", "sell", "avoid", "info_only", "ask_info"]
EMOTION_LABELS = ["greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm"]

MAX_TEXT_CHARS = 200
NEAR_DUPLICATE_THRESHOLD = 0.8

# Score bands of the labeling guide, used by the statistics table. Each band is [low, high), the last one closed.
SCORE_BANDS = {
    "certainty": [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)],
    "relevance": [(0.0, 0.3), (0.3, 0.4), (0.4, 0.7), (0.7, 1.0)],
    "toxicity": [(0.0, 0.05), (0.05, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 1.0)],
}


@dataclass(frozen=True)
class LabelSchema:
    """Label names of the heads, in the order of the model's outputs."""

    sentiment: tuple = tuple(SENTIMENT_LABELS)
    action: tuple = tuple(ACTION_LABELS)
    emotion: tuple = tuple(EMOTION_LABELS)
    scores: tuple = tuple(SCORE_FIELDS)

    @classmethod
    def from_config(cls, config):
        return cls(
            sentiment=tuple(config.sentiment_labels),
            action=tuple(config.action_labels),
            emotion=tuple(config.emotion_labels),
            scores=tuple(config.regression_targets),
        )


@dataclass
class Row:
    """One parsed row: where it came from, its fields, and what is wrong with it."""

    path: str
    line: int
    fields: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @property
    def location(self):
        return f"{self.path}:{self.line}"

    @property
    def text(self):
        return self.fields.get(TEXT_FIELD)


class DataError(ValueError):
    """Raised when labeled data has invalid rows; the message lists every problem with its file and line."""

    def __init__(self, problems, summary):
        self.problems = problems
        shown = problems[:50]
        more = f"\n... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{summary}\n" + "\n".join(shown) + more)


# Reading


def read_rows(path):
    """Read a `.jsonl`/`.json` (one object a line) or `.csv` file into `Row`s, keeping unparsable lines as problems."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} not found.")

    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return list(_read_jsonl(path))
    if suffix == ".csv":
        return list(_read_csv(path))
    raise ValueError(f"Unsupported data file {path}: use .jsonl (one JSON object a line) or .csv with a header row.")


def _read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = Row(str(path), line_number)
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                row.problems.append(f"{row.location}: invalid JSON ({error.msg} at column {error.colno})")
                yield row
                continue
            if not isinstance(value, dict):
                row.problems.append(f"{row.location}: a row must be a JSON object, got {type(value).__name__}")
            else:
                row.fields = value
            yield row


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or TEXT_FIELD not in reader.fieldnames:
            raise ValueError(
                f"CSV file {path} has no {TEXT_FIELD!r} column in its header {reader.fieldnames}; the header must name "
                f"the columns, for example: {','.join([TEXT_FIELD, *LABEL_FIELDS])}"
            )
        for values in reader:
            # The reader's line number is the last physical line of the record; quoted newlines make records span more.
            row = Row(str(path), reader.line_num)
            if None in values:
                row.problems.append(f"{row.location}: more cells than header columns: {values[None]!r}")
                values.pop(None)
            row.fields = {key: _parse_csv_cell(key, value) for key, value in values.items()}
            yield row


def _parse_csv_cell(key, value):
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if key == EMOTIONS_FIELD:
        if value.startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return [name for name in re.split(r"[|;,\s]+", value) if name]
    if key in SCORE_FIELDS:
        try:
            return float(value)
        except ValueError:
            return value
    return value


# Validation


def check_row(row, schema=LabelSchema(), max_chars=MAX_TEXT_CHARS):
    """Append to `row.problems` every invalid field of `row`, naming the field, the value and what is valid."""
    if row.problems and not row.fields:
        return row

    where = row.location
    text = row.fields.get(TEXT_FIELD)
    if text is None:
        row.problems.append(f"{where}: field {TEXT_FIELD!r} is missing; every row needs the sentence to label")
    elif not isinstance(text, str):
        row.problems.append(f"{where}: field {TEXT_FIELD!r} must be a string, got {text!r}")
    elif not text.strip():
        row.problems.append(f"{where}: field {TEXT_FIELD!r} is empty")
    elif len(text) > max_chars:
        row.problems.append(
            f"{where}: field {TEXT_FIELD!r} has {len(text)} characters, over the limit of {max_chars}; "
            "split it into sentences"
        )

    for name, valid in ((SENTIMENT_FIELD, schema.sentiment), (ACTION_FIELD, schema.action)):
        value = row.fields.get(name)
        if value is not None and value not in valid:
            row.problems.append(f"{where}: field {name!r} has unknown label {value!r}; valid labels: {list(valid)}")

    emotions = row.fields.get(EMOTIONS_FIELD)
    if emotions is not None:
        if not isinstance(emotions, list) or not all(isinstance(name, str) for name in emotions):
            row.problems.append(
                f"{where}: field {EMOTIONS_FIELD!r} must be a list of emotion names, got {emotions!r}; "
                f"valid names: {list(schema.emotion)}"
            )
        else:
            unknown = [name for name in emotions if name not in schema.emotion]
            if unknown:
                row.problems.append(
                    f"{where}: field {EMOTIONS_FIELD!r} has unknown emotions {unknown}; valid names: "
                    f"{list(schema.emotion)}"
                )
            repeated = sorted({name for name in emotions if emotions.count(name) > 1})
            if repeated:
                row.problems.append(f"{where}: field {EMOTIONS_FIELD!r} repeats {repeated}; list each emotion once")

    for name in schema.scores:
        value = row.fields.get(name)
        if value is None:
            continue
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or math.isnan(value) or not 0.0 <= value <= 1.0:
            row.problems.append(f"{where}: field {name!r} must be a number in [0, 1], got {value!r}")
    return row


def normalize_text(text):
    """Collapse runs of whitespace and trim, the form in which duplicates are compared."""
    return re.sub(r"\s+", " ", text).strip()


def char_trigrams(text):
    """Return the set of character trigrams of the normalized text (the whole text when it is shorter than 3)."""
    text = normalize_text(text)
    return {text[i:i + 3] for i in range(max(1, len(text) - 2))}


def jaccard(first, second):
    return len(first & second) / len(first | second) if first or second else 1.0


def find_near_duplicates(texts, threshold=NEAR_DUPLICATE_THRESHOLD):
    """Return `(i, j, similarity)` for every pair `i < j` whose trigram Jaccard similarity is >= `threshold`.

    Uses prefix filtering: with trigrams ordered from rarest to most common, two sets with Jaccard >= t must share a
    trigram among the first `|A| - ceil(t * |A|) + 1` of either set. Only those prefixes are indexed, so the cost
    grows with the number of real candidates, not with the square of the row count.
    """
    sets = [char_trigrams(text) for text in texts]
    frequency = collections.Counter(gram for grams in sets for gram in grams)
    ordered = [sorted(grams, key=lambda gram: (frequency[gram], gram)) for grams in sets]

    index = collections.defaultdict(list)
    pairs = []
    for j in sorted(range(len(sets)), key=lambda k: len(sets[k])):
        size = len(ordered[j])
        prefix = ordered[j][: size - math.ceil(threshold * size) + 1]
        candidates = {i for gram in prefix for i in index[gram]}
        for i in candidates:
            if len(sets[i]) >= threshold * size:
                similarity = jaccard(sets[i], sets[j])
                if similarity >= threshold:
                    pairs.append((min(i, j), max(i, j), similarity))
        for gram in prefix:
            index[gram].append(j)
    return sorted(pairs)


def check_duplicates(rows, threshold=NEAR_DUPLICATE_THRESHOLD):
    """Append exact and near-duplicate problems to the later row of each pair, within and across files."""
    texted = [row for row in rows if isinstance(row.text, str) and row.text.strip()]

    first_seen = {}
    for row in texted:
        key = normalize_text(row.text)
        if key in first_seen:
            row.problems.append(f"{row.location}: exact duplicate of {first_seen[key].location}: {row.text!r}")
        else:
            first_seen[key] = row

    unique = list(first_seen.values())
    for i, j, similarity in find_near_duplicates([row.text for row in unique], threshold):
        earlier, later = unique[i], unique[j]
        later.problems.append(
            f"{later.location}: near duplicate (trigram Jaccard {similarity:.2f} >= {threshold}) of "
            f"{earlier.location}: {later.text!r} ~ {earlier.text!r}"
        )


@dataclass
class ValidationReport:
    rows: list
    missing: collections.Counter

    @property
    def invalid_rows(self):
        return [row for row in self.rows if row.problems]

    @property
    def problems(self):
        return [problem for row in self.rows for problem in row.problems]

    def summary(self):
        missing = ", ".join(f"{name} {count}" for name, count in self.missing.items() if count) or "none"
        return (
            f"{len(self.rows)} rows, {len(self.rows) - len(self.invalid_rows)} valid, {len(self.invalid_rows)} "
            f"invalid ({len(self.problems)} problems); missing labels: {missing}"
        )


def validate_files(paths, schema=LabelSchema(), max_chars=MAX_TEXT_CHARS, threshold=NEAR_DUPLICATE_THRESHOLD,
                   duplicates=True):
    """Read and check every row of `paths`, including duplicates within and across the files."""
    rows = [row for path in paths for row in read_rows(path)]
    for row in rows:
        check_row(row, schema, max_chars)
    if duplicates:
        check_duplicates(rows, threshold)

    missing = collections.Counter({name: 0 for name in LABEL_FIELDS})
    for row in rows:
        if row.fields:
            missing.update(name for name in LABEL_FIELDS if row.fields.get(name) is None)
    return ValidationReport(rows, missing)


def load_valid_rows(paths, schema=LabelSchema(), max_chars=MAX_TEXT_CHARS, duplicates=False):
    """Return the rows of `paths` as dicts, or raise `DataError` listing every invalid row. Nothing is dropped."""
    report = validate_files(paths, schema, max_chars, duplicates=duplicates)
    if report.invalid_rows:
        raise DataError(report.problems, f"Invalid data in {', '.join(map(str, paths))}: {report.summary()}.")
    return [row.fields for row in report.rows]


# Statistics


def label_counts(records, schema=LabelSchema()):
    """Count labels of `records` (dicts): classes, emotion positives, rows without emotion, score bands, lengths."""
    counts = collections.OrderedDict()
    counts["rows"] = len(records)
    for name, labels in ((SENTIMENT_FIELD, schema.sentiment), (ACTION_FIELD, schema.action)):
        for label in labels:
            counts[f"{name}={label}"] = sum(1 for record in records if record.get(name) == label)
        counts[f"{name} missing"] = sum(1 for record in records if record.get(name) is None)

    for label in schema.emotion:
        counts[f"emotions has {label}"] = sum(1 for record in records if label in (record.get(EMOTIONS_FIELD) or []))
    counts["emotions empty"] = sum(1 for record in records if record.get(EMOTIONS_FIELD) == [])
    counts["emotions missing"] = sum(1 for record in records if record.get(EMOTIONS_FIELD) is None)

    for name, bands in SCORE_BANDS.items():
        values = [record.get(name) for record in records]
        for index, (low, high) in enumerate(bands):
            last = index == len(bands) - 1
            counts[f"{name} in [{low:.2f}, {high:.2f}{']' if last else ')'}"] = sum(
                1 for value in values if value is not None and low <= value and (value < high or last and value <= high)
            )
        counts[f"{name} missing"] = sum(1 for value in values if value is None)
    counts["toxicity >= 0.5"] = sum(1 for record in records if (record.get("toxicity") or 0.0) >= 0.5)
    counts["relevance <= 0.3"] = sum(1 for record in records if record.get("relevance") is not None
                                     and record["relevance"] <= 0.3)

    lengths = [len(record[TEXT_FIELD]) for record in records if isinstance(record.get(TEXT_FIELD), str)]
    counts["text length min"] = min(lengths, default=0)
    counts["text length median"] = sorted(lengths)[len(lengths) // 2] if lengths else 0
    counts["text length max"] = max(lengths, default=0)
    return counts


def format_counts_table(columns):
    """Render `{column name: label_counts(...)}` as a Markdown table, one row per count."""
    names = list(columns)
    keys = list(next(iter(columns.values())))
    lines = ["| label | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {key} | " + " | ".join(str(columns[name][key]) for name in names) + " |" for key in keys]
    return "\n".join(lines)


# Splitting


def stratified_split(records, ratios=(0.8, 0.1, 0.1), seed=0):
    """Split `records` into len(ratios) parts, stratified by (sentiment, action), deterministic for a seed.

    Each stratum is shuffled and cut by largest remainders, so every part gets its share of every stratum and the
    part sizes add up exactly.
    """
    if not ratios or any(ratio < 0 for ratio in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(f"Invalid split ratios {list(ratios)}: use non-negative numbers that add up to 1.")

    strata = collections.defaultdict(list)
    for record in records:
        strata[(str(record.get(SENTIMENT_FIELD)), str(record.get(ACTION_FIELD)))].append(record)

    generator = random.Random(seed)
    parts = [[] for _ in ratios]
    for key in sorted(strata):
        members = strata[key]
        generator.shuffle(members)
        exact = [ratio * len(members) for ratio in ratios]
        sizes = [math.floor(value) for value in exact]
        by_remainder = sorted(range(len(ratios)), key=lambda k: (sizes[k] - exact[k], k))
        for k in by_remainder[: len(members) - sum(sizes)]:
            sizes[k] += 1
        start = 0
        for part, size in zip(parts, sizes):
            part.extend(members[start:start + size])
            start += size

    for part in parts:
        generator.shuffle(part)
    return parts


def write_jsonl(records, path):
    """Write `records` to `path` as JSONL through a temporary file, so a failure leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            for record in records:
                output.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# Command line


def _schema_from_model(model):
    if model is None:
        return LabelSchema()
    from transformers import AutoConfig

    return LabelSchema.from_config(AutoConfig.from_pretrained(model, trust_remote_code=True))


def _command_validate(args):
    schema = _schema_from_model(args.model)
    report = validate_files(args.files, schema, args.max_chars, args.near_duplicate_threshold)
    for problem in report.problems:
        print(problem)
    print(("FAILED: " if report.invalid_rows else "OK: ") + report.summary())
    return 1 if report.invalid_rows else 0


def _command_stats(args):
    schema = _schema_from_model(args.model)
    columns = collections.OrderedDict()
    everything = []
    for path in args.files:
        records = load_valid_rows([path], schema, max_chars=args.max_chars)
        columns[Path(path).name] = label_counts(records, schema)
        everything.extend(records)
    if len(columns) > 1:
        columns["total"] = label_counts(everything, schema)

    if args.format == "json":
        print(json.dumps(columns, ensure_ascii=False, indent=2))
    else:
        print(format_counts_table(columns))
    return 0


def _command_split(args):
    schema = _schema_from_model(args.model)
    records = load_valid_rows(args.files, schema, max_chars=args.max_chars, duplicates=True)

    names = args.names
    if len(names) != len(args.ratios):
        raise SystemExit(f"--names {names} and --ratios {args.ratios} must have the same length.")
    targets = [Path(args.output_dir) / f"{name}.jsonl" for name in names]
    existing = [str(path) for path in targets if path.exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"Refusing to overwrite {existing}: pass --overwrite or choose another --output-dir.")

    for path, part in zip(targets, stratified_split(records, args.ratios, args.seed)):
        write_jsonl(part, path)
        print(f"{path}: {len(part)} rows")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m lqkbert data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add_common(command):
        command.add_argument("files", nargs="+", help="JSONL or CSV files in the corpus format")
        command.add_argument("--max-chars", type=int, default=MAX_TEXT_CHARS,
                             help="maximum text length in characters (default: %(default)s, the model's input limit)")
        command.add_argument("--model", default=None,
                             help="read the label names from this model folder or Hub name instead of the card's")

    validate = commands.add_parser("validate", help="check every row; exit 1 when any row is invalid")
    add_common(validate)
    validate.add_argument("--near-duplicate-threshold", type=float, default=NEAR_DUPLICATE_THRESHOLD,
                          help="character-trigram Jaccard similarity at which two texts count as near duplicates "
                               "(default: %(default)s)")
    validate.set_defaults(run=_command_validate)

    stats = commands.add_parser("stats", help="print the per-label count table of each file and the total")
    add_common(stats)
    stats.add_argument("--format", choices=["markdown", "json"], default="markdown", help="output format")
    stats.set_defaults(run=_command_stats)

    split = commands.add_parser("split", help="split files into stratified train/dev/test JSONL files")
    add_common(split)
    split.add_argument("--output-dir", required=True, help="folder for the split files")
    split.add_argument("--ratios", type=float, nargs="+", default=[0.8, 0.1, 0.1], help="share of each split")
    split.add_argument("--names", nargs="+", default=["train", "dev", "test"], help="file name of each split")
    split.add_argument("--seed", type=int, default=0, help="shuffle seed (default: %(default)s)")
    split.add_argument("--overwrite", action="store_true", help="replace existing split files")
    split.set_defaults(run=_command_split)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
