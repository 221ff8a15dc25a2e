"""Inference benchmark: the model card's way against `python -m lqkbert predict`, on the same model and texts.

    .venv/bin/python benchmarks/bench_inference.py [--model DIR] [--num-texts 2000] [--repeat 2] [--output FILE]

Each path runs in its own Python process, on the same model and the same texts, and reports:

- texts per second: the fastest of `--repeat` timed passes over all texts, after an untimed warm-up batch, from the
  tokenizer to the result dicts. The paths take turns, one pass each per round;
- memory: the RSS that loading the model added, and the peak RSS during the timed passes minus the RSS before them
  (Linux VmHWM, reset through /proc/self/clear_refs);
- agreement with the baseline: the share of identical sentiment, action and emotion-set decisions, and the largest
  difference of any probability or score.

The paths: the model card's code (texts in the given order, batches of 32 padded to the longest, float32, eager
attention), `predict` with its defaults, with `--dtype float32`, with `--dtype int8`, and with `--onnx` on the float32
and int8 exports. The texts are the `text` fields of data/*.jsonl when that corpus exists, otherwise built-in Korean
sentences, repeated up to `--num-texts`. Without `--model`, a klue/bert-base-sized LQ-KBERT with random weights (vocab
32000, hidden 768, 12 layers, 12 heads) is built in a temporary folder, with a WordPiece vocabulary trained on the
texts. The Markdown table is printed and written to docs/benchmarks.md with the machine and library versions.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"
CARD_BATCH_SIZE = 32
WARMUP_TEXTS = 64
WORKER_PREFIX = "bench-worker: "

# Sentences written for this benchmark, of varied length like community posts and news lines.
BUILT_IN_TEXTS = [
    "비트 가즈아",
    "이더 존버 중",
    "오늘도 물렸다 ㅠㅠ",
    "솔라나 네트워크 잠시 멈춤, 재개 시점 미정",
    "업비트 원화 마켓 신규 상장 공지 떴네요",
    "도지코인 또 밈으로 펌핑하는 거 보니까 불장 끝물인 듯",
    "지금 들어가도 되나요? 아니면 조정 더 기다릴까요?",
    "금리 동결 발표 후 비트코인 1억 3천만원대 회복",
    "ㅋㅋㅋㅋ 숏 친 사람들 다 청산당했네",
    "알트 시즌 온다는 말만 3년째 듣는 중",
    "거래소 해킹 소식에 관련 토큰 30% 급락, 입출금 전면 중단",
    "익절하고 치킨 시켰다 🍗",
    "이 코인 백서 읽어봤는데 실체가 하나도 없음. 스캠 냄새 진하게 남",
    "고래 지갑에서 5천 BTC가 거래소로 이동, 매도 물량 나올 수도",
    "점심 뭐 먹지",
    "반감기 이후 채굴 난이도 사상 최고치 경신",
    "김치 프리미엄 다시 5% 넘었다, 과열 신호일지도",
    "물타기 세 번째인데 평단이 안 내려가요 살려주세요",
    "ETF 자금 유입 4일 연속 순유입, 누적 20억 달러 돌파",
    "레버리지 100배는 도박이지 투자가 아니다",
    "스테이블코인 규제 법안 국회 통과, 내년 시행 예정",
    "🚀🚀🚀",
    "진짜 이번엔 바닥 맞음? 아니면 지하실 더 있음?",
    "선물 미결제약정 급증, 변동성 확대 주의 구간 진입. 롱숏 비율은 롱 쪽으로 크게 기울어 있고 펀딩비도 "
    "양수로 높게 유지 중이라 단기 청산 물량이 쏟아질 가능성이 있음",
    "코인 커뮤니티 분위기 보면 다들 확신에 차 있는데 이럴 때가 제일 무섭다",
]

TABLE_COLUMNS = [
    "path",
    "seconds per pass",
    "texts/s",
    "speed-up",
    "model RSS MB",
    "peak run RSS MB",
    "same sentiment",
    "same action",
    "same emotion sets / labels",
    "max abs diff",
]


def load_texts(num_texts):
    """Return `num_texts` texts and their source: data/*.jsonl when present, else the built-in sentences."""
    texts = []
    files = sorted((REPO_ROOT / "data").glob("*.jsonl"))
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and isinstance(value.get("text"), str) and value["text"].strip():
                texts.append(value["text"])

    if texts:
        source = f"the `text` fields of {', '.join(f'data/{path.name}' for path in files)}, {len(texts)} in all"
    else:
        texts = list(BUILT_IN_TEXTS)
        source = f"the benchmark's {len(texts)} built-in sentences"
    if len(texts) < num_texts:
        source += f", repeated to {num_texts}"
    elif len(texts) > num_texts:
        source = f"the first {num_texts} of " + source
    repeated = (texts * (num_texts // len(texts) + 1))[:num_texts]
    return repeated, source


def build_random_model(texts, folder):
    """Save a klue/bert-base-sized LQ-KBERT with random weights and a WordPiece vocabulary trained on `texts`."""
    from lqkbert.model_folder import KLUE_BERT_BASE_DIMENSIONS, config_class, model_class, save_model_folder
    from lqkbert.tokenizer import train_wordpiece

    tokenizer = train_wordpiece(sorted(set(texts)), Path(folder) / "tokenizer", vocab_size=32000, min_frequency=2)
    config = config_class()(**KLUE_BERT_BASE_DIMENSIONS)
    torch.manual_seed(0)
    model = model_class()(config).eval()
    return save_model_folder(model, tokenizer, Path(folder) / "model")


# ----------------------------------------------------------------------------------------------------------------
# Worker: one path, in a fresh process.


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line; the memory figures need Linux.")


class PeakRss:
    """Peak RSS of this process over a block, in MiB above the RSS at its start."""

    def __enter__(self):
        self.start = _status_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.sampler = None
        except OSError:
            # NOTE: without a resettable VmHWM, a thread samples VmRSS every 5 ms and can miss short peaks.
            self.peak = self.start
            self.running = True
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _status_kib("VmRSS"))
            time.sleep(0.005)

    def __exit__(self, *exc_info):
        if self.sampler is None:
            self.peak = _status_kib("VmHWM")
        else:
            self.running = False
            self.sampler.join()
        self.delta_mib = (self.peak - self.start) / 1024
        return False


def _card_predictions(model_dir):
    from lqkbert.inference import load_folder_tokenizer
    from lqkbert.model_folder import config_class, model_class
    from lqkbert.remote_code import import_hub_module

    decode_predictions = import_hub_module("pipeline_lqkbert").decode_predictions
    config = config_class().from_pretrained(model_dir)
    tokenizer = load_folder_tokenizer(model_dir, config)
    model = model_class().from_pretrained(model_dir, attn_implementation="eager").eval()

    def run(batch_texts):
        results = []
        with torch.inference_mode():
            for start in range(0, len(batch_texts), CARD_BATCH_SIZE):
                chunk = batch_texts[start:start + CARD_BATCH_SIZE]
                encoded = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=200)
                outputs = model(**encoded)
                results.extend(decode_predictions(
                    config, *(outputs[name] for name in ("logits_senti", "logits_act", "logits_emo", "pred_reg")),
                    return_scores=True,
                ))
        return results

    return run


def _predictor_run(model_dir, method, threads):
    from lqkbert.inference import BatchPredictor, TorchRunner, load_folder_tokenizer, load_onnx, resolve_dtype
    from lqkbert.model_folder import config_class

    if method.startswith("onnx"):
        runner, config, tokenizer = load_onnx(model_dir, threads)
    else:
        dtype = {"default": "auto", "float32": "float32", "int8": "int8"}[method]
        config = config_class().from_pretrained(model_dir)
        tokenizer = load_folder_tokenizer(model_dir, config)
        runner = TorchRunner.from_folder(model_dir, resolve_dtype(dtype))
    predictor = BatchPredictor(runner, config, tokenizer, return_scores=True)
    return predictor.predict


def run_worker(args):
    """Load one path, then run a timed pass for each `pass` line on stdin until `finish`; write the report."""
    texts = json.loads(Path(args.texts_file).read_text(encoding="utf-8"))
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    # Import the libraries of every path first, so that "model RSS" counts the model and not the imports.
    import onnxruntime  # noqa: F401
    import torch.ao.quantization  # noqa: F401

    from lqkbert import inference  # noqa: F401
    from lqkbert.remote_code import import_hub_module

    import_hub_module("pipeline_lqkbert")
    rss_before_load = _status_kib("VmRSS")
    if args.worker == "card":
        run = _card_predictions(args.model)
    else:
        run = _predictor_run(args.model, args.worker, args.threads)
    run(texts[:WARMUP_TEXTS])
    model_mib = (_status_kib("VmRSS") - rss_before_load) / 1024
    _send("ready")

    timings, peaks, results = [], [], None
    for command in sys.stdin:
        if command.strip() == "finish":
            break
        with PeakRss() as memory:
            start = time.perf_counter()
            results = run(texts)
            timings.append(time.perf_counter() - start)
        peaks.append(memory.delta_mib)
        _send(f"done {timings[-1]:.2f}")

    report = {
        "texts_per_second": len(texts) / min(timings),
        "seconds": timings,
        "model_mib": model_mib,
        "peak_run_mib": max(peaks),
        "threads": torch.get_num_threads(),
        "results": results,
    }
    Path(args.result_file).write_text(json.dumps(report, ensure_ascii=False), encoding="utf-8")
    return 0


def _send(message):
    # Libraries may print to stdout too; the parent reads only the lines with this prefix.
    print(f"{WORKER_PREFIX}{message}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Parent: build, export, run the workers, compare and write the table.


PATHS = [
    ("card", "model card's code (baseline): given order, batch 32, float32, eager", "model"),
    ("default", "`predict` default (length-sorted batch 64, SDPA, {default_dtype})", "model"),
    ("float32", "`predict --dtype float32`", "model"),
    ("int8", "`predict --dtype int8` (torch dynamic quantization)", "model"),
    ("onnx", "`predict --onnx` (onnxruntime, float32 export)", "onnx"),
    ("onnx_int8", "`predict --onnx` (onnxruntime, int8 export)", "onnx_int8"),
]


def run_paths(locations, texts_file, work_dir, args):
    """Run every path in its own worker process and return their reports, keyed by path.

    The workers load one after the other, then take turns: each round runs one timed pass of every path. Another
    process that loads the CPUs for a while then slows one pass of some paths, not every pass of one path.
    """
    workers = {}
    try:
        for method, _, where in PATHS:
            print(f"loading {method} ...", file=sys.stderr, flush=True)
            command = [
                sys.executable, str(Path(__file__).resolve()), "--worker", method, "--model", str(locations[where]),
                "--texts-file", str(texts_file), "--result-file", str(Path(work_dir) / f"{method}.json"),
            ]
            if args.threads is not None:
                command += ["--threads", str(args.threads)]
            workers[method] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            _receive(workers[method], method, "ready")

        for round_number in range(1, args.repeat + 1):
            for method, worker in workers.items():
                worker.stdin.write("pass\n")
                worker.stdin.flush()
                seconds = _receive(worker, method, "done").split()[1]
                print(f"round {round_number}/{args.repeat}: {method} took {seconds} s", file=sys.stderr, flush=True)

        reports = {}
        for method, worker in workers.items():
            worker.stdin.write("finish\n")
            worker.stdin.close()
            if worker.wait() != 0:
                raise RuntimeError(f"The {method} worker exited with {worker.returncode}; its stderr is above.")
            reports[method] = json.loads((Path(work_dir) / f"{method}.json").read_text(encoding="utf-8"))
        return reports
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def _receive(worker, method, expected):
    for line in worker.stdout:
        if line.startswith(WORKER_PREFIX):
            message = line[len(WORKER_PREFIX):].strip()
            if message.startswith(expected):
                return message
    raise RuntimeError(
        f"The {method} worker exited with {worker.wait()} before reporting {expected!r}; its stderr is above."
    )


def compare(results, baseline, emotion_labels):
    """Return the shares of identical decisions and the largest probability or score difference to `baseline`.

    `emotions` counts texts whose whole emotion set is identical; `emotion_labels` counts the single yes/no decisions,
    one per text and emotion.
    """
    same = {"sentiment_strength": 0, "action_signal": 0, "emotions": 0}
    same_labels = 0
    largest = 0.0
    for result, reference in zip(results, baseline, strict=True):
        for key in same:
            same[key] += result[key] == reference[key]
        same_labels += sum((name in result["emotions"]) == (name in reference["emotions"]) for name in emotion_labels)
        largest = max(largest, _largest_difference(result, reference))

    shares = {key: count / len(baseline) for key, count in same.items()}
    shares["emotion_labels"] = same_labels / (len(baseline) * len(emotion_labels))
    return shares, largest


def _largest_difference(result, reference):
    largest = 0.0
    for key, value in reference.items():
        if isinstance(value, dict):
            largest = max(largest, max(abs(result[key][label] - number) for label, number in value.items()))
        elif isinstance(value, float):
            largest = max(largest, abs(result[key] - value))
    return largest


def count_padded_tokens(texts, tokenizer):
    """Return the tokens, padding included, of the baseline's batches and of `predict`'s length-sorted batches."""
    from lqkbert.inference import DEFAULT_BATCH_SIZE
    from lqkbert.remote_code import import_hub_module

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=200)["input_ids"]]
    card = sum(
        len(lengths[start:start + CARD_BATCH_SIZE]) * max(lengths[start:start + CARD_BATCH_SIZE])
        for start in range(0, len(lengths), CARD_BATCH_SIZE)
    )
    batches = import_hub_module("pipeline_lqkbert").length_sorted_batches(lengths, DEFAULT_BATCH_SIZE)
    sorted_total = sum(len(batch) * max(lengths[index] for index in batch) for batch in batches)
    return {"card": card, "sorted": sorted_total}


def decision_margins(baseline, config):
    """Return the median gap between the two most probable sentiments, and of emotion probabilities to thresholds."""
    sentiment_gaps, emotion_gaps = [], []
    thresholds = dict(zip(config.emotion_labels, config.emotion_threshold_list()))
    for result in baseline:
        top_two = sorted(result["sentiment_scores"].values(), reverse=True)[:2]
        sentiment_gaps.append(top_two[0] - top_two[1])
        emotion_gaps.extend(abs(probability - thresholds[name]) for name, probability in result["emotion_scores"].items())
    return statistics.median(sentiment_gaps), statistics.median(emotion_gaps)


def machine_description(threads):
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    import onnxruntime
    import transformers

    from lqkbert.inference import cpu_supports_bf16

    return {
        "CPU": f"{cpu}, {os.cpu_count()} logical CPUs, native bfloat16: {'yes' if cpu_supports_bf16() else 'no'}",
        "threads": str(threads),
        "versions": (
            f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"onnxruntime {onnxruntime.__version__}"
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_table(rows):
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(TABLE_COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run_benchmark(args):
    from lqkbert.export import INT8_FILE_NAME, export_onnx
    from lqkbert.inference import load_folder_tokenizer, resolve_dtype
    from lqkbert.model_folder import config_class

    texts, source = load_texts(args.num_texts)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lqkbert-bench-") as work_dir:
        if args.model is None:
            print("building a random klue/bert-base-sized model ...", file=sys.stderr, flush=True)
            model_dir = build_random_model(texts, work_dir)
            model_description = "klue/bert-base-sized LQ-KBERT with random weights (vocab 32000, hidden 768, 12 layers, 12 heads)"
        else:
            model_dir = Path(args.model)
            model_description = f"`{args.model}`"
        config = config_class().from_pretrained(model_dir)
        padded_tokens = count_padded_tokens(texts, load_folder_tokenizer(model_dir, config))

        print("exporting to ONNX ...", file=sys.stderr, flush=True)
        export_start = time.perf_counter()
        onnx_dir = export_onnx(model_dir, Path(work_dir) / "onnx", int8=True)
        export_seconds = time.perf_counter() - export_start

        texts_file = Path(work_dir) / "texts.json"
        texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        locations = {"model": model_dir, "onnx": onnx_dir, "onnx_int8": onnx_dir / INT8_FILE_NAME}
        reports = run_paths(locations, texts_file, work_dir, args)
    load_after = os.getloadavg()

    baseline = reports["card"]
    default_dtype = "bfloat16 autocast" if resolve_dtype("auto") == "bfloat16" else "float32"
    rows = []
    for method, label, _ in PATHS:
        report = reports[method]
        shares, largest = compare(report["results"], baseline["results"], config.emotion_labels)
        rows.append([
            label.format(default_dtype=default_dtype),
            ", ".join(f"{seconds:.1f}" for seconds in report["seconds"]),
            f"{report['texts_per_second']:.1f}",
            f"{report['texts_per_second'] / baseline['texts_per_second']:.2f}x",
            f"{report['model_mib']:.0f}",
            f"{report['peak_run_mib']:.0f}",
            f"{shares['sentiment_strength']:.2%}",
            f"{shares['action_signal']:.2%}",
            f"{shares['emotions']:.2%} / {shares['emotion_labels']:.2%}",
            f"{largest:.2e}",
        ])

    sentiment_gap, emotion_gap = decision_margins(baseline["results"], config)
    machine = machine_description(baseline["threads"])
    table = render_table(rows)
    print(table)

    document = render_document(
        table, machine, model_description, source, len(texts), args.repeat, export_seconds, load_before, load_after,
        sentiment_gap, emotion_gap, reports, padded_tokens, args.model is None,
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(document, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


RANDOM_MODEL_NOTE = """
With random weights the heads give near-uniform probabilities, so many texts sit next to a boundary. A trained
model's heads separate the classes, so its gaps are expected to be larger and its shares of identical decisions
higher than these. That is an expectation, not measured here.

Each run also trains the random model's WordPiece vocabulary anew, and that training is not reproducible: two runs on
the same texts give different vocabularies, even with one thread. The model's inputs, and so the agreement figures,
change a little from run to run.
"""


def render_document(
    table, machine, model_description, source, num_texts, repeat, export_seconds, load_before, load_after,
    sentiment_gap, emotion_gap, reports, padded_tokens, random_model,
):
    default_ratio = reports["default"]["texts_per_second"] / reports["card"]["texts_per_second"]
    float32_ratio = reports["float32"]["texts_per_second"] / reports["card"]["texts_per_second"]
    bf16_ratio = reports["default"]["texts_per_second"] / reports["float32"]["texts_per_second"]
    passes = "pass" if repeat == 1 else "passes"
    load_before = ", ".join(f"{value:.2f}" for value in load_before)
    load_after = ", ".join(f"{value:.2f}" for value in load_after)
    return f"""# Inference benchmark

Written by `benchmarks/bench_inference.py` from the run below. Rerun it to refresh this page.

- Machine: {machine['CPU']}. Torch threads: {machine['threads']}.
- Software: {machine['versions']}.
- Date: {machine['date']}.
- Load average (1, 5, 15 min): {load_before} before the run, {load_after} after it. Other processes on the same CPUs slow the passes they overlap.
- Model: {model_description}.
- Texts: {num_texts}, {source}. Every path reads the same texts.
- Padded tokens per pass: {padded_tokens['card']} in the baseline's batches, {padded_tokens['sorted']} in the length-sorted batches of `predict`.
- Speed: texts per second over all texts, from tokenizing to the result dicts, in the fastest of {repeat} timed {passes} after an untimed warm-up batch of {WARMUP_TEXTS} texts. Each path runs in its own process, and the paths take turns, one pass each per round.
- Memory: "model RSS" is the resident memory that loading the model and the warm-up added. "Peak run RSS" is the largest rise of resident memory during a timed pass (Linux VmHWM, reset through /proc/self/clear_refs). Not tracemalloc: most of the memory belongs to torch and onnxruntime, outside Python's allocator.
- Agreement with the baseline, from the last pass: the shares of texts whose sentiment, action and whole emotion set are identical, the share of identical yes/no decisions per emotion, and the largest absolute difference of any probability (softmax, sigmoid) or clamped score.
- ONNX export (float32 and int8, with its checks against PyTorch) took {export_seconds:.0f} s.

{table}

The default path runs {default_ratio:.2f}x the baseline's texts per second: {float32_ratio:.2f}x from length-sorted batches and SDPA attention (the float32 row), times {bf16_ratio:.2f}x from bfloat16.

## Reading the agreement

Lower precision moves every probability a little, and a decision changes only when a text lies closer to a decision boundary than that move. The baseline's median gap between its two most probable sentiments is {sentiment_gap:.2e}, and the median distance of an emotion probability from its threshold is {emotion_gap:.2e}. The float32 paths differ from the baseline by rounding only: padding length, attention kernel and, for ONNX, the runtime's kernels.
{RANDOM_MODEL_NOTE if random_model else ""}"""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="LQ-KBERT model folder (default: a random klue/bert-base-sized model)")
    parser.add_argument("--num-texts", type=int, default=2000, help="number of texts (default: 2000)")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes per path; the best counts (default: 2)")
    parser.add_argument("--threads", type=int, help="torch threads in every path (default: torch's own)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help=f"Markdown file (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--texts-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.num_texts < WARMUP_TEXTS:
        raise SystemExit(f"Invalid --num-texts {args.num_texts}: use at least {WARMUP_TEXTS}, the warm-up batch.")
    if args.repeat < 1:
        raise SystemExit(f"Invalid --repeat {args.repeat}: use at least 1 timed pass.")
    if args.worker is not None:
        return run_worker(args)
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
