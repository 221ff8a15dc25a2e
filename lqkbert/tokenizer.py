"""Train a cased Korean WordPiece vocabulary, for models built where klue/bert-base cannot be downloaded."""

import logging
import shutil
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from .model_folder import ROOT_TOKENIZER_CONFIG, load_tokenizer


logger = logging.getLogger(__name__)

# klue/bert-base's special tokens and their ids: [PAD] must be id 0, the `pad_token_id` of the config.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts, output_dir, vocab_size=8000, min_frequency=2):
    """Train a WordPiece vocabulary on `texts` and write a BERT tokenizer folder to `output_dir`.

    The normalizer neither lower-cases nor strips accents, so Hangul syllables are never decomposed into jamo, and
    every character of the training texts enters the alphabet, so emoji and jamo such as `ㅋ` get ids instead of
    `[UNK]`. Returns the tokenizer loaded back through `AutoTokenizer`.
    """
    texts = [text for text in texts if text and text.strip()]
    if not texts:
        raise ValueError("Cannot train a WordPiece vocabulary on no text: pass at least one non-empty sentence.")

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")

    alphabet = sorted({char for text in texts for char in text if not char.isspace()})
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        continuing_subword_prefix="##",
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    (output_dir / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
    shutil.copyfile(ROOT_TOKENIZER_CONFIG, output_dir / "tokenizer_config.json")
    logger.info("Trained a WordPiece vocabulary of %d tokens on %d texts into %s", len(vocab), len(texts), output_dir)

    return load_tokenizer(output_dir)
