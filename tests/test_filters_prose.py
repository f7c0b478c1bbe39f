"""Prose filters at their published thresholds: a document exactly at a limit passes, one
step beyond it fails under the rule's name. Texts are built to the character, so each
case moves only the value under test."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from helox.data.documents import Document
from helox.data.filters import (
    C4Config,
    C4Filter,
    Drop,
    FineWebConfig,
    FineWebFilter,
    GopherQualityConfig,
    GopherQualityFilter,
    GopherRepetitionConfig,
    GopherRepetitionFilter,
    Step,
)
from helox.data.filters.gopher import WordNgrams

CONSONANTS = "bcdfghjklmnprstvz"
VOWELS = "aeiou"


def word(index: int) -> str:
    """A distinct five-letter pseudo-word for each index."""
    letters = []
    for alphabet in (CONSONANTS, VOWELS, CONSONANTS, VOWELS, CONSONANTS):
        index, digit = divmod(index, len(alphabet))
        letters.append(alphabet[digit])
    return "".join(letters)


def filler(count: int, start: int = 0) -> str:
    """`count` distinct words: 6 * count - 1 characters."""
    return " ".join(word(start + i) for i in range(count))


def filler_chars(chars: int, start: int = 0) -> str:
    """Distinct words (and a final run of 'q', a letter no word uses) of exactly `chars`."""
    words, used = [], 0
    while chars - used > 12:
        words.append(word(start + len(words)))
        used += 6
    return " ".join([*words, "q" * (chars - used)])


def padded(parts: list[str], total: int, separator: str = "\n", start: int = 5000) -> str:
    """Join `parts` and one last filler part sized so that the text is `total` long."""
    head = separator.join(parts) + separator
    return head + filler_chars(total - len(head), start)


def outcome(step: Step, text: str) -> str | None:
    """The rule that dropped `text`, or None if it was kept."""
    result = step(Document(text, "t.txt"), Counter())
    return result.rule if isinstance(result, Drop) else None


# --- Gopher quality -----------------------------------------------------------------------

QUALITY = GopherQualityFilter(GopherQualityConfig())


def plain(count: int) -> list[str]:
    """`count` words of mean length under 5, two of them stop words."""
    return ["the", "and"] + ["alpha"] * (count - 2)


@pytest.mark.parametrize(
    ("words", "rule"),
    [
        (plain(50), None),
        (plain(49), "too_few_words"),
        (plain(100_000), None),
        (plain(100_001), "too_many_words"),
        (["the", "and"] + ["cat"] * 48, None),  # mean 3.0
        (["the", "and"] + ["cat"] * 47 + ["at"], "short_words"),
        (["the", "and"] + ["abcdefghij"] * 34 + ["abcdefghijk"] * 14, None),  # mean 10.0
        (["the", "and"] + ["abcdefghij"] * 33 + ["abcdefghijk"] * 15, "long_words"),
        (plain(50) + ["#"] * 5, None),  # 0.1 per word; "#" alone is not a word
        (plain(50) + ["#"] * 6, "hashes"),
        (["the", "and", "...", "..."] + ["\u2026"] * 3 + ["alpha"] * 48, None),
        (["the", "and", "..."] * 3 + ["\u2026"] * 3 + ["alpha"] * 48, "ellipses"),
        (plain(40) + ["1990"] * 10, None),  # 40 of 50 words have a letter
        (plain(39) + ["1990"] * 11, "non_alphabetic_words"),
        (["The", "AND."] + ["alpha"] * 48, None),
        (["the", "the", "the"] + ["alpha"] * 47, "stop_words"),  # one distinct stop word
    ],
)
def test_gopher_quality_words(words: list[str], rule: str | None) -> None:
    assert outcome(QUALITY, " ".join(words)) == rule


def lines_of(count: int, marked: int, mark: str, at_end: bool = False) -> str:
    lines = []
    for index in range(count):
        line = "the and alpha alpha alpha"
        if index < marked:
            line = line + " " + mark if at_end else mark + " " + line
        lines.append(line)
    return "\n".join(lines)


def test_gopher_quality_bullet_and_ellipsis_lines() -> None:
    assert outcome(QUALITY, lines_of(10, 9, "-")) is None  # 0.9 of lines
    assert outcome(QUALITY, lines_of(10, 10, "\u2022")) == "bullet_lines"
    assert outcome(QUALITY, lines_of(10, 3, "...", at_end=True)) is None  # 0.3 of lines
    assert outcome(QUALITY, lines_of(10, 4, "\u2026", at_end=True)) == "ellipsis_lines"


def test_gopher_quality_names_the_value() -> None:
    dropped = QUALITY(Document(" ".join(plain(49)), "t.txt"), Counter())
    assert dropped == Drop("gopher_quality", "too_few_words", "49 words < 50")


# --- Gopher repetition --------------------------------------------------------------------

RELAXED = {
    "max_duplicate_line_fraction": 1.0,
    "max_duplicate_line_char_fraction": 1.0,
    "max_duplicate_paragraph_fraction": 1.0,
    "max_duplicate_paragraph_char_fraction": 1.0,
    "max_top_ngram_char_fractions": [],
    "max_duplicate_ngram_char_fractions": [],
}


def repetition_only(*names: str) -> GopherRepetitionFilter:
    """The filter with only the named limits (at their defaults) in force."""
    defaults = GopherRepetitionConfig()
    limits = {**RELAXED, **{name: getattr(defaults, name) for name in names}}
    return GopherRepetitionFilter(GopherRepetitionConfig(**limits))


def interleaved(repeated: str, copies: int, unique: int) -> list[str]:
    """`unique` distinct ten-word items with `copies` of `repeated` placed between them."""
    items = [filler(10, 100 * i) for i in range(unique)]
    for slot in range(copies):
        items.insert(2 * slot + 1, repeated)
    return items


def test_duplicate_lines_and_paragraphs() -> None:
    lines = repetition_only("max_duplicate_line_fraction")
    assert outcome(lines, "\n".join(interleaved("ok go now", 4, 6))) is None  # 3 of 10 repeat
    assert outcome(lines, "\n".join(interleaved("ok go now", 5, 6))) == "duplicate_lines"
    paragraphs = repetition_only("max_duplicate_paragraph_fraction")
    assert outcome(paragraphs, "\n\n".join(interleaved("ok go now", 4, 6))) is None
    assert outcome(paragraphs, "\n\n\n".join(interleaved("ok go", 5, 6))) == "duplicate_paragraphs"


@pytest.mark.parametrize(
    ("limit", "separator", "rule"),
    [
        ("max_duplicate_line_char_fraction", "\n", "duplicate_line_chars"),
        ("max_duplicate_paragraph_char_fraction", "\n\n", "duplicate_paragraph_chars"),
    ],
)
def test_duplicate_line_and_paragraph_characters(limit: str, separator: str, rule: str) -> None:
    step = repetition_only(limit)
    repeated = filler(10)  # 59 characters, repeated once: 0.2 of 295
    parts = [repeated, filler(3, 50), repeated]
    assert outcome(step, padded(parts, 295, separator)) is None
    assert outcome(step, padded(parts, 294, separator)) == rule


def test_top_ngram_characters() -> None:
    step = repetition_only("max_top_ngram_char_fractions")
    # "ab cd" (5 characters) four times: 0.2 of 100 characters.
    words = ["ab", "cd", word(1), "ab", "cd", word(2), "ab", "cd", word(3), "ab", "cd"]
    assert outcome(step, padded([" ".join(words)], 100, " ")) is None
    assert outcome(step, padded([" ".join(words)], 99, " ")) == "top_2gram"
    # Three copies of a 4-gram of 14 characters: 42 of 262.5 is 0.16.
    gram = "aaa bb cc dddd"
    text = " ".join([gram, word(1), gram, word(2), gram])
    assert outcome(step, padded([text], 263, " ")) is None
    assert outcome(step, padded([text], 262, " ")) == "top_4gram"


def test_duplicated_ngram_characters() -> None:
    step = repetition_only("max_duplicate_ngram_char_fractions")
    gram = "aaa bb cc dd ee"  # 15 characters, repeated once: 0.15 of 100
    text = " ".join([gram, word(1), gram])
    assert outcome(step, padded([text], 100, " ")) is None
    assert outcome(step, padded([text], 99, " ")) == "duplicate_5grams"
    # A twelve-word passage repeated covers the same characters for n = 5..12: at 71 of
    # 617 (0.115) the 5- to 8-gram limits hold and the 9-gram limit (0.11) is the first broken.
    passage = filler(12, 300)
    text = " ".join([passage, word(1), passage])
    assert outcome(step, padded([text], 617, " ")) == "duplicate_9grams"
    assert outcome(step, padded([text], 710, " ")) is None  # 0.10: every limit holds


def test_ngram_keys_match_a_plain_count() -> None:
    rng = random.Random(7)
    for _ in range(200):
        vocabulary = [rng.choice("abcdef") * rng.randint(1, 3) for _ in range(rng.randint(1, 6))]
        words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 40))]
        ngrams = WordNgrams(words)
        for n in range(2, 8):
            grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
            counts = Counter(grams)
            most = max(counts.values(), default=0)
            top = most * max((len(g) for g, c in counts.items() if c == most), default=0)
            assert ngrams.top_chars(n) == (top if most > 1 else 0)
            covered, seen = [False] * len(words), set()
            for i, gram in enumerate(grams):
                if gram in seen:
                    covered[i : i + n] = [True] * n
                seen.add(gram)
            spaces = sum(a and b for a, b in zip(covered, covered[1:], strict=False))
            chars = sum(len(w) for w, c in zip(words, covered, strict=True) if c) + spaces
            assert ngrams.duplicate_chars(n) == chars


def test_gopher_repetition_defaults_keep_ordinary_prose() -> None:
    step = GopherRepetitionFilter(GopherRepetitionConfig())
    text = "\n\n".join(f"{filler(12, 40 * i)}." for i in range(8))
    assert outcome(step, text) is None
    assert outcome(step, "") is None


# --- C4 -----------------------------------------------------------------------------------

C4 = C4Filter(C4Config())


def c4(text: str) -> tuple[Document | Drop, Counter[str]]:
    tally: Counter[str] = Counter()
    return C4(Document(text, "t.txt"), tally), tally


SENTENCE = "This line holds five words."


def test_c4_keeps_sentence_lines_and_counts_the_rest() -> None:
    text = "\n".join(
        [
            "# A heading without a full stop",
            SENTENCE,
            "Four words end here.",
            'She said: "five words, quoted."',
            "It trails off into an ellipsis...",
            "One more line with five words!",
            "Where is JavaScript needed at all here?",
            "Read our Privacy Policy before you go on.",
            "A citation comes after this claim [1].",
            "Is this the last kept line of text?",
        ]
    )
    result, tally = c4(text)
    assert result.text == "\n".join(
        [
            SENTENCE,
            'She said: "five words, quoted."',
            "One more line with five words!",
            "A citation comes after this claim .",
            "Is this the last kept line of text?",
        ]
    )
    assert tally == {
        "lines_without_terminal_punctuation": 2,
        "lines_with_few_words": 1,
        "javascript_lines": 1,
        "policy_lines": 1,
    }


def test_c4_sentences_words_and_page_rules() -> None:
    assert c4("\n\n".join([SENTENCE] * 3))[0].text == "\n".join([SENTENCE] * 3)
    assert c4("\n".join([SENTENCE] * 2))[0].rule == "too_few_sentences"
    assert isinstance(c4("One. Two. Three sentences on one line.")[0], Document)
    for length, kept in ((1000, True), (1001, False)):
        long_word = "x" * length
        result, tally = c4(f"{SENTENCE}\n{SENTENCE}\nA word {long_word} ends this.\n{SENTENCE}")
        assert isinstance(result, Document)
        assert (long_word in result.text) is kept
        assert tally["lines_with_a_long_word"] == (not kept)
    assert c4(f"{SENTENCE}\nLorem Ipsum dolor sit amet.")[0].rule == "lorem_ipsum"
    assert c4(f"{SENTENCE}\nThe set {{1, 2}} has two members.")[0].rule == "curly_bracket"
    relaxed = C4Filter(C4Config(drop_curly_brackets=False, min_sentences=0))
    assert outcome(relaxed, "int main() { return 0; }") == "no_lines_left"


# --- FineWeb ------------------------------------------------------------------------------

FINEWEB = FineWebFilter(FineWebConfig())


def long_line(index: int, end: str = ".") -> str:
    return filler(6, 10 * index) + end  # 36 characters


def test_fineweb_terminal_punctuation_lines() -> None:
    lines = [long_line(i, "." if i < 3 else "") for i in range(25)]  # 3 of 25 = 0.12
    assert outcome(FINEWEB, "\n".join(lines)) is None
    lines[2] = long_line(2, "")
    assert outcome(FINEWEB, "\n".join(lines)) == "line_punctuation"


def test_fineweb_short_lines() -> None:
    def text(short: int) -> str:
        lines = [filler(4, 10 * i) + "." for i in range(short)]  # 24 characters
        lines += [filler(8, 10 * i + 5000) + "." for i in range(100 - short)]
        return "\n".join(lines)

    assert outcome(FINEWEB, text(67)) is None
    assert outcome(FINEWEB, text(68)) == "short_lines"


def test_fineweb_duplicate_line_characters() -> None:
    repeated = filler(6) + "."  # 36 characters once repeated: 0.01 of 3600
    lines = [repeated, long_line(1), repeated] + [long_line(i) for i in range(2, 40)]

    def text(chars_without_newlines: int) -> str:
        head = "\n".join(lines) + "\n"
        last = chars_without_newlines - (len(head) - head.count("\n"))
        return head + filler_chars(last - 1, 9000) + "."

    assert outcome(FINEWEB, text(3600)) is None
    assert outcome(FINEWEB, text(3599)) == "duplicate_line_chars"


def test_fineweb_newlines_per_word() -> None:
    def text(words: int) -> str:
        pool = [word(i) + word(i + 500) for i in range(words)]  # ten-letter words
        lines = [" ".join(pool[i : i + 3]) + "." for i in range(0, words, 3)]
        return "\n".join(lines)

    assert outcome(FINEWEB, text(30)) is None  # 9 newlines, 30 words
    assert outcome(FINEWEB, text(29)) == "newlines_per_word"


def test_prose_filter_configs_are_their_published_values() -> None:
    assert (GopherQualityConfig().min_words, GopherQualityConfig().min_stop_words) == (50, 2)
    assert GopherRepetitionConfig().max_top_ngram_char_fractions == [
        [2, 0.20],
        [3, 0.18],
        [4, 0.16],
    ]
    assert (C4Config().min_words_per_line, C4Config().min_sentences) == (5, 3)
    assert FineWebConfig().max_duplicate_line_char_fraction == 0.01
