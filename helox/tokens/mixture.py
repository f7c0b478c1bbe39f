"""Mixing sources by weight at training time: every batch's rows drawn from the sources' own
train shards, each source's share of the rows its weight's share.

Each source (`corpus.sources`) is tokenized once into its own train shards; no weight reaches
the data stages, so a weight edit reruns training only. `MixedBatches` gives row n of the
run, counted over all processes, to the source that is owed the most rows at that point
(weight share × (n + 1) − rows it has had), so every source's count stays within about a row
of its share at every step: deterministic, and a function of the rows drawn so far alone, so
the loader's state (rows per source) resumes it exactly on any split of the batch over
processes and micro-batches. Within a source, rows are its windows in a shuffled order per
epoch (`WindowOrder`), each source with its own epochs: a source with a high weight and few
tokens repeats, one with a low weight is left partly unseen. Validation and test are never
mixed: they are read as the corpus has them.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from helox.common.io import read_json
from helox.tokens.loader import ProcessShare, TokenStream, WindowOrder, inputs_and_labels

log = logging.getLogger(__name__)

# Past about four epochs, repeated tokens are worth much less than new ones (Muennighoff
# et al., "Scaling Data-Constrained Language Models", 2023): a source repeated more is named.
MAX_QUIET_EPOCHS = 4.0


class MixtureError(ValueError):
    """The weights and the sources in the shards do not match, or a weighted source is empty."""


def source_shares(
    weights: Mapping[str, float] | None, train_tokens: Mapping[str, int]
) -> dict[str, float]:
    """Each source's share of the training rows: its weight over the sum of the weights, or,
    without weights, its share of the train tokens (the corpus's natural proportions)."""
    chosen = dict(weights) if weights else dict(train_tokens)
    missing = sorted(set(train_tokens) - set(chosen))
    unknown = sorted(set(chosen) - set(train_tokens))
    if missing or unknown:
        raise MixtureError(
            f"the shards hold the sources {sorted(train_tokens)}, the weights name "
            f"{sorted(chosen)}: corpus.sources must name the sources the shards were made from"
        )
    for name, weight in chosen.items():
        if train_tokens[name] <= 0:
            raise MixtureError(
                f"corpus source {name!r} has weight {weight} but no training tokens left after "
                "cleaning and deduplication: check its folder and the clean stats"
            )
    total = sum(chosen.values())
    return {name: chosen[name] / total for name in sorted(chosen)}


def assign_rows(shares: Sequence[float], drawn: list[int], rows: int, count: int) -> list[int]:
    """The source of each of the next `count` rows after `rows` rows, of which source s had
    `drawn[s]` (updated in place): each row goes to the source owed the most (the first on
    ties)."""
    if len(shares) == 1:
        drawn[0] += count
        return [0] * count
    sources = []
    for row in range(rows + 1, rows + count + 1):
        owed = [share * row - had for share, had in zip(shares, drawn, strict=True)]
        source = owed.index(max(owed))
        drawn[source] += 1
        sources.append(source)
    return sources


class MixedBatches(ProcessShare):
    """Endless training batches whose rows are drawn from several sources' train streams by
    their `shares` (`source_shares`); `state()`/`load_state()` resume exactly."""

    def __init__(
        self,
        streams: Mapping[str, TokenStream],
        shares: Mapping[str, float],
        seq_len: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(batch_size, rank, world_size)
        self.names = sorted(streams)
        self.streams = [streams[name] for name in self.names]
        self.shares = [shares[name] for name in self.names]
        self.seq_len = seq_len
        self.windows = [
            WindowOrder(stream.num_windows(seq_len), seed, self.order_key(name))
            for name, stream in zip(self.names, self.streams, strict=True)
        ]
        self.rows = 0
        self.drawn = [0] * len(self.names)

    def order_key(self, name: str) -> tuple[int, ...]:
        """What seeds a source's window order besides the seed and epoch: its name's CRC-32
        (none for a lone source, whose windows come in `PackedBatches`' order)."""
        return (zlib.crc32(name.encode()),) if len(self.names) > 1 else ()

    def state(self) -> dict:
        return {"rows": self.rows, "drawn": dict(zip(self.names, self.drawn, strict=True))}

    def load_state(self, state: dict) -> None:
        if sorted(state["drawn"]) != self.names:
            raise MixtureError(
                f"the saved position holds the sources {sorted(state['drawn'])}, this run "
                f"mixes {self.names}"
            )
        self.rows = int(state["rows"])
        self.drawn = [int(state["drawn"][name]) for name in self.names]

    def _take(self, count: int) -> list[tuple[int, int]]:
        """(source, window id) of each of the next `count` rows."""
        before = list(self.drawn)
        sources = assign_rows(self.shares, self.drawn, self.rows, count)
        self.rows += count
        windows = [
            iter(order.take(start, end - start))
            for order, start, end in zip(self.windows, before, self.drawn, strict=True)
        ]
        return [(source, int(next(windows[source]))) for source in sources]

    def __next__(self) -> tuple[Tensor, Tensor]:
        mine = self.own_share(self._take(self.batch_size * self.world_size))
        rows = np.empty((len(mine), self.seq_len + 1), dtype=np.int64)
        for row, (source, window) in zip(rows, mine, strict=True):
            self.streams[source].read(window * self.seq_len, row)
        return inputs_and_labels(rows)

    def shares_by_source(self) -> dict[str, float]:
        return dict(zip(self.names, self.shares, strict=True))

    def available_tokens(self) -> int:
        """The tokens of every source's train shards together."""
        return sum(stream.num_tokens for stream in self.streams)

    def planned_epochs(self, rows: int) -> dict[str, float]:
        """The epochs of each source's windows that a run of `rows` rows draws, with a warning
        naming each source repeated past MAX_QUIET_EPOCHS."""
        epochs = {}
        for name, share, stream, order in zip(
            self.names, self.shares, self.streams, self.windows, strict=True
        ):
            epochs[name] = share * rows / order.count
            log.info(
                "corpus source %r: %.1f%% of the rows, %.2f epochs", name, 100 * share, epochs[name]
            )
            if epochs[name] > MAX_QUIET_EPOCHS:
                log.warning(
                    "corpus source %r: its weight's share of %.1f%% of the %s training rows "
                    "repeats its %s train tokens about %.1f times; past %.0f epochs repeats "
                    "add little and invite memorisation: lower its weight in corpus.sources "
                    "or give it more text",
                    name,
                    100 * share,
                    f"{rows:,}",
                    f"{stream.num_tokens:,}",
                    epochs[name],
                    MAX_QUIET_EPOCHS,
                )
        return epochs

    def drawn_summary(self) -> dict[str, dict[str, float]]:
        """Per source: its share of the rows, the train tokens drawn (rows × seq_len), the
        tokens its train shards hold and the epochs of its windows drawn."""
        return {
            name: {
                "share": share,
                "train_tokens": drawn * self.seq_len,
                "available_tokens": stream.num_tokens,
                "epochs": drawn / order.count,
            }
            for name, share, drawn, stream, order in zip(
                self.names, self.shares, self.drawn, self.streams, self.windows, strict=True
            )
        }


def mixed_batches(
    manifest_path: str | os.PathLike,
    weights: Mapping[str, float] | None,
    seq_len: int,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> MixedBatches:
    """The training batches of a shards folder: its sources mixed by `weights` (None: in their
    natural proportions)."""
    names = sorted(read_json(manifest_path).get("sources", {}))
    if not names:
        raise MixtureError(f"{manifest_path} lists no sources: rebuild the shards")
    streams = {name: TokenStream(manifest_path, "train", name) for name in names}
    shares = source_shares(weights, {name: s.num_tokens for name, s in streams.items()})
    return MixedBatches(streams, shares, seq_len, batch_size, seed, rank, world_size)
