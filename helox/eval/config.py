"""The settings of the evaluate stage's tasks: HumanEval, the built-in next-line task, the
user's own multiple-choice tasks and the public models scored beside the stages, composed by
EvalConfig, the eval section."""

from __future__ import annotations

from dataclasses import dataclass, field

from helox.common.config_files import ConfigError, build_sections


@dataclass
class HumanEvalConfig:
    enabled: bool = True
    samples: int = 1  # completions per problem; pass@k needs samples >= k
    pass_at: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.0  # 0 = greedy (then samples must be 1)
    top_p: float = 0.95
    max_new_tokens: int = 128
    limit: int | None = None  # the first N problems; None = all 164
    timeout_s: float = 5.0  # wall-clock seconds per candidate program
    memory_mb: int = 1024  # address-space limit per candidate
    workers: int = 2  # candidate programs run side by side

    def __post_init__(self) -> None:
        too_large = [k for k in self.pass_at if k > self.samples]
        if too_large:
            raise ConfigError(
                f"eval.humaneval.pass_at asks for pass@{too_large[0]}, which needs "
                f"eval.humaneval.samples >= {too_large[0]}; samples is {self.samples}"
            )
        if self.temperature == 0 and self.samples > 1:
            raise ConfigError(
                f"eval.humaneval.samples is {self.samples} but eval.humaneval.temperature is 0 "
                "(greedy), which repeats one completion; set temperature > 0 or samples: 1"
            )


@dataclass
class NextLineTaskConfig:
    enabled: bool = True
    examples: int = 200
    choices: int = 4
    context_lines: int = 6


@dataclass
class ChoiceTaskConfig:
    name: str
    path: str


@dataclass
class BaselineConfig:
    """An imported Hugging Face folder scored beside the stages, as a column of the card."""

    name: str  # the column's name and the file name of its results
    path: str  # a local folder of a supported family (helox.model.import_hf)


@dataclass
class EvalConfig:
    device: str = "auto"
    batch_size: int = 8
    bpb_max_batches: int | None = None  # None = whole val and test splits
    shots: int = 3  # solved examples placed before each multiple-choice question
    humaneval: HumanEvalConfig = field(default_factory=HumanEvalConfig)
    next_line: NextLineTaskConfig = field(default_factory=NextLineTaskConfig)
    tasks: list[ChoiceTaskConfig] = field(default_factory=list)
    baselines: list[BaselineConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        build_sections(self, "eval")
