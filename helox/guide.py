"""The original Helox guide's entry points, as thin faces over the functions the rules call.

People arrive with the guide in hand; these keep its names and argument names. Each
method does nothing of its own beyond calling the stage functions the workflow uses.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helox.common.config_files import ConfigError
from helox.common.io import JsonlWriter, atomic_path, write_json
from helox.common.schema import retired_key_error
from helox.data.clean_config import CleanConfig
from helox.data.documents import Document, Stats
from helox.data.filters import Step, apply_steps, build_steps
from helox.data.kinds import Kind, detect_kind
from helox.data.readers import read_documents
from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.folder import save_final
from helox.model.network import HeloxLM
from helox.tokens.loader import PackedBatches, TokenStream, eval_batches
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.train.checkpoint import run_fingerprint
from helox.train.config import TrainingConfig
from helox.train.loop import Trainer
from helox.train.tracking import Tracker, TrackingConfig

log = logging.getLogger(__name__)


class TextCleaner:
    """Clean one string at a time with the same steps as the clean stage.

    The arguments set the general limits over the default filters; `from_config`
    takes a whole `clean` section instead. The guide's `max_urls`, a count of URLs, is
    refused with what replaced it: `max_url_char_fraction`, the share of characters in URLs.
    """

    def __init__(
        self,
        min_length: int = CleanConfig.min_text_length,
        max_length: int = CleanConfig.max_text_length,
        max_urls: int | None = None,
        unicode_form: str = CleanConfig.unicode_form,
        max_url_char_fraction: float = CleanConfig.max_url_char_fraction,
    ):
        if max_urls is not None:
            raise ConfigError(retired_key_error("clean.max_urls"))
        self._configure(
            CleanConfig(
                min_text_length=min_length,
                max_text_length=max_length,
                max_url_char_fraction=max_url_char_fraction,
                unicode_form=unicode_form,
            )
        )

    @classmethod
    def from_config(cls, config: CleanConfig) -> TextCleaner:
        """A cleaner running every step that `config` (a whole `clean` section) asks for."""
        cleaner = cls()
        cleaner._configure(config)
        return cleaner

    def _configure(self, config: CleanConfig) -> None:
        self.config = config
        self.steps: list[Step] = build_steps(config)
        self.stats = Stats()
        self.stats.register([step.name for step in self.steps])

    def clean(self, text: str, kind: Kind | None = None) -> str | None:
        """The cleaned text, or None if a step dropped it (counted in `self.stats`); text of
        no given kind is detected as web, prose or docs."""
        doc = Document(text, "<text>", kind or detect_kind(text))
        result, dropped = apply_steps(doc, self.steps, self.stats)
        return result.text if dropped is None else None


class DataCollector:
    """Gather a folder into one plain `collected.jsonl`, cleaned by a TextCleaner."""

    def __init__(self, output_dir: str | os.PathLike, cleaner: TextCleaner | None = None):
        self.output_dir = Path(output_dir)
        self.cleaner = cleaner or TextCleaner()
        self.stats = Stats()

    def collect_from_directory(self, source_dir: str | os.PathLike, recursive: bool = True) -> Path:
        """Write the kept documents of `source_dir` to `output_dir/collected.jsonl` and return it.

        The counts go to `collected.jsonl.stats.json` beside it and to `self.stats`.
        """
        output = self.output_dir / "collected.jsonl"
        stats = Stats()
        stats.register([step.name for step in self.cleaner.steps])
        documents = read_documents(source_dir, self.cleaner.config, stats, recursive=recursive)
        with JsonlWriter(output) as writer:
            for doc in documents:
                result, dropped = apply_steps(doc, self.cleaner.steps, stats)
                if dropped is None:
                    writer.write(result.record())
        write_json(output.with_name(output.name + ".stats.json"), stats.to_dict())
        self.stats = self.stats + stats
        log.info(
            "collected %d of %d documents from %s into %s",
            stats.flow.documents_out,
            stats.flow.documents_in,
            source_dir,
            output,
        )
        return output


class TokenizerTrainer:
    """The guide's tokenizer trainer: SentencePiece with Helox's special tokens."""

    def __init__(self, vocab_size: int = 8000, model_type: str = "bpe"):
        self.config = TokenizerConfig(vocab_size=vocab_size, model_type=model_type)

    def train_from_jsonl(
        self, jsonl_file: str | os.PathLike, output_prefix: str = "spm", output_dir: str = "."
    ) -> tuple[Path, Path]:
        """Train on a JSONL(.zst) file of {"text"}; returns (model_path, vocab_path)."""
        build_tokenizer([jsonl_file], output_dir, self.config, prefix=output_prefix)
        output_dir = Path(output_dir)
        return output_dir / f"{output_prefix}.model", output_dir / f"{output_prefix}.vocab"


@dataclass
class TokenDataset:
    """Token shards with their manifest, and the window length training will read."""

    root: Path
    manifest: dict
    max_length: int
    seed: int

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def train_loader(self, batch_size: int) -> PackedBatches:
        """Endless shuffled (input_ids, labels) batches of `max_length` tokens."""
        stream = TokenStream(self.manifest_path, "train")
        return PackedBatches(stream, self.max_length, batch_size, self.seed)

    def eval_loader(self, split: str, batch_size: int) -> list:
        """Every window of `split` in order, as a list of batches."""
        return list(
            eval_batches(TokenStream(self.manifest_path, split), self.max_length, batch_size)
        )


class DatasetBuilder:
    """The guide's dataset builder: JSONL → tokenized Arrow shards split by document."""

    def __init__(
        self, tokenizer_model_path: str | os.PathLike, max_length: int = 256, seed: int = 1337
    ):
        self.tokenizer_model_path = Path(tokenizer_model_path)
        self.max_length = max_length
        self.seed = seed

    def build_from_jsonl(
        self,
        jsonl_file: str | os.PathLike,
        train_split: float = 0.98,
        val_split: float = 0.01,
        test_split: float = 0.01,
    ) -> TokenDataset:
        """Tokenize into a temporary folder; `save_dataset` moves it where it belongs."""
        config = ShardsConfig(train_split=train_split, val_split=val_split, test_split=test_split)
        root = Path(tempfile.mkdtemp(prefix="helox-dataset-"))
        manifest = build_dataset_shards(
            [jsonl_file], self.tokenizer_model_path, root, config, self.seed
        )
        return TokenDataset(root, manifest, self.max_length, self.seed)


def save_dataset(dataset: TokenDataset, path: str | os.PathLike, format: str = "arrow") -> Path:
    """Place the dataset's shards and manifest at `path` (Arrow IPC is the one format)."""
    if format != "arrow":
        raise ValueError(f"save_dataset format {format!r} is not supported; use 'arrow'")
    with atomic_path(path) as tmp:
        shutil.copytree(dataset.root, tmp)
    shutil.rmtree(dataset.root, ignore_errors=True)
    dataset.root = Path(path)
    return dataset.root


class PretrainingTrainer:
    """The guide's trainer: the same loop as the pretrain rule, driven by your own loaders."""

    def __init__(
        self,
        model: HeloxLM,
        config: TrainingConfig,
        model_config: ModelConfig,
        device_manager: DeviceManager | None = None,
        checkpoint_dir: str | os.PathLike = "checkpoints",
        tracking: TrackingConfig | None = None,
    ):
        self.model = model
        self.config = config
        self.model_config = model_config
        self.device_manager = device_manager or DeviceManager(config.device)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.tracking = tracking or TrackingConfig(enabled=False)
        self.metrics: dict = {}

    def train(self, train_loader, val_loader, resume_from_checkpoint: str | None = None) -> dict:
        """Train to `config.total_steps`; `resume_from_checkpoint` names a step_N folder."""
        fingerprint = run_fingerprint(model=vars(self.model_config), training=vars(self.config))
        with Tracker(self.tracking, run_name="pretrain") as tracker:
            trainer = Trainer(
                self.model,
                train_loader,
                lambda: val_loader,
                self.config,
                self.device_manager,
                self.checkpoint_dir,
                fingerprint,
                tracker,
            )
            self.metrics = trainer.fit(resume_from=resume_from_checkpoint)
        return self.metrics

    def save_model(
        self, folder: str | os.PathLike, tokenizer_model_path: str | os.PathLike
    ) -> Path:
        """Write a self-contained model folder, as the pretrain rule's `final/`."""
        return save_final(folder, self.model, self.model_config, tokenizer_model_path, self.metrics)
