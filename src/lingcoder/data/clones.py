"""Shingles that survive consistent renaming: the unit of renamed-copy (type-2 clone) detection.

A file copied with its identifiers consistently renamed (class, attributes, locals) keeps almost
none of its word 5-grams, yet its token stream keeps its shape. `clone_token_hashes` lexes a file per
language (comments dropped, with the language's comment syntax; keywords, operators, numbers and
string literals kept as they are) and replaces each identifier by the distance, counted in
identifiers, back to its previous occurrence (0 for a first occurrence). This is Baker's
parameterised string: a consistent renaming leaves it unchanged, reformatting and comments never
reach it, and two files that only share boilerplate still differ in their literals, their
keywords and in which names recur where.

Everything after the lexer's `findall` is numpy: one xxhash per distinct token, the distances
from a stable sort of the identifiers, and `shingles` hashes each window of n tokens with a
polynomial. Word shingles (lower-cased `[A-Za-z_0-9]+` 5-grams, The Stack's unit) are made the
same way, once per document text (`cached_word_shingles`): the repetition rule and the MinHash
signature share them. dedup.py feeds datatrove's MinHash signature both kinds.
"""

from __future__ import annotations

import keyword
import re
from functools import cache

import numpy as np
import xxhash

from lingcoder.data.code_lines import COMMENT_SYNTAX

_C_FAMILY = (
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "true false null NULL"
)
_JS = (
    "break case catch class const continue debugger default delete do else export extends finally for function "
    "if import in instanceof let new return super switch this throw try typeof var void while with yield async "
    "await of static get set from as null undefined true false"
)
KEYWORDS: dict[str, str] = {
    "Python": " ".join(keyword.kwlist + keyword.softkwlist),
    "Cython": " ".join(keyword.kwlist) + " cdef cpdef cimport ctypedef struct nogil",
    "JavaScript": _JS,
    "TypeScript": _JS + " interface type enum implements private protected public readonly abstract declare "
    "namespace module keyof infer is any unknown never number string boolean",
    "Java": "abstract assert boolean break byte case catch char class const continue default do double else enum "
    "extends final finally float for goto if implements import instanceof int interface long native new package "
    "private protected public return short static strictfp super switch synchronized this throw throws transient "
    "try void volatile while var record true false null",
    "C": _C_FAMILY,
    "C++": _C_FAMILY + " class namespace template typename public private protected virtual override new delete "
    "this operator using try catch throw friend explicit constexpr nullptr bool mutable noexcept",
    "C#": "abstract as base bool break byte case catch char checked class const continue decimal default delegate "
    "do double else enum event explicit extern false finally fixed float for foreach goto if implicit in int "
    "interface internal is lock long namespace new null object operator out override params private protected "
    "public readonly ref return sbyte sealed short sizeof static string struct switch this throw true try typeof "
    "uint ulong unchecked unsafe ushort using virtual void volatile while var async await",
    "Go": "break case chan const continue default defer else fallthrough for func go goto if import interface map "
    "package range return select struct switch type var nil true false",
    "Rust": "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match "
    "mod move mut pub ref return self Self static struct super trait true type unsafe use where while",
    "PHP": "abstract and array as break callable case catch class clone const continue declare default do echo "
    "else elseif empty enddeclare endfor endforeach endif endswitch endwhile extends final finally fn for "
    "foreach function global goto if implements include instanceof insteadof interface isset list match "
    "namespace new or print private protected public require return static switch throw trait try unset use "
    "var while yield null true false",
    "Ruby": "alias and begin break case class def defined do else elsif end ensure false for if in module next nil "
    "not or redo rescue retry return self super then true undef unless until when while yield",
    "Kotlin": "as break class continue do else false for fun if in interface is null object package return super "
    "this throw true try typealias val var when while",
    "Swift": "class deinit enum extension func import init let protocol struct subscript typealias var break case "
    "continue default do else fallthrough for guard if in repeat return switch where while as false is nil self "
    "super throw throws true try",
    "Scala": "abstract case catch class def do else extends false final finally for if implicit import lazy match "
    "new null object override package private protected return sealed super this throw trait try true type val "
    "var while with yield",
    "Shell": "if then else elif fi case esac for select while until do done in function time",
}
# Alternatives in the order they are tried at each position: the most common tokens first. A string
# prefix (r"..", b'..') lexes as a name and then the string, the same way in every copy.
WORD_TOKEN = r"[A-Za-z_]\w*|\d[\w.]*"
STRING = r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`"""
# Triple-quoted strings are one literal token (code_lines counts them as comment lines; here a
# docstring or a doctest holds content that tells files apart).
TRIPLE_QUOTED = ("\"\"\"", "'''")
PUNCTUATION = r"[^\s\w]|\w"
CODE_WORD = re.compile(r"[A-Za-z_0-9]+")
MIX = np.uint64(0x9E3779B97F4A7C15)
EMPTY = np.empty((0, 1), dtype=np.uint64)


@cache
def _lexer(language: str) -> tuple[re.Pattern, tuple[str, ...], frozenset[str]]:
    """(token regex, comment openers, keywords) of `language` (no comments for unknown languages)."""
    line_markers, blocks = COMMENT_SYNTAX.get(language, ((), ()))
    strings = [f"{quotes}.*?{quotes}" for quotes, _ in blocks if quotes in TRIPLE_QUOTED]
    blocks = tuple(block for block in blocks if block[0] not in TRIPLE_QUOTED)
    comments = [f"{re.escape(start)}.*?{re.escape(end)}" for start, end in blocks]
    comments += [f"{re.escape(marker)}[^\\n]*" for marker in line_markers if marker.isascii()]
    pattern = "|".join([WORD_TOKEN, *strings, *comments, STRING, PUNCTUATION])
    openers = tuple(start for start, _ in blocks) + tuple(line_markers)
    return re.compile(pattern, re.DOTALL), openers, frozenset(KEYWORDS.get(language, "").split())


def _mix(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        values = values ^ (values >> np.uint64(29))
        values = values * MIX
        return values ^ (values >> np.uint64(32))


def _vocabulary_ids(tokens: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """(id of each token, distinct token -> id), with no Python-level loop over the tokens."""
    vocabulary = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return np.fromiter(map(vocabulary.__getitem__, tokens), dtype=np.int64, count=len(tokens)), vocabulary


def _hash_vocabulary(vocabulary: dict[str, int], salt: int) -> np.ndarray:
    return np.fromiter(
        (xxhash.xxh64_intdigest(token.encode("utf-8", "surrogatepass"), seed=salt) for token in vocabulary),
        dtype=np.uint64,
        count=len(vocabulary),
    )


def token_hashes(tokens: list[str], salt: int = 0) -> np.ndarray:
    """One 64-bit hash per token (xxhash once per distinct token)."""
    ids, vocabulary = _vocabulary_ids(tokens)
    return _hash_vocabulary(vocabulary, salt)[ids]


def clone_token_hashes(text: str, language: str | None, salt: int = 1) -> tuple[np.ndarray, int]:
    """(hashes of the file's renaming-proof token stream, how many of its tokens are identifiers):
    comments dropped, each identifier replaced by the distance (in identifiers) back to its
    previous occurrence, 0 for a first occurrence."""
    pattern, openers, keywords = _lexer(language or "")
    ids, vocabulary = _vocabulary_ids(pattern.findall(text))
    if not vocabulary:
        return np.empty(0, dtype=np.uint64), 0
    kinds = np.fromiter(  # per distinct token: 0 kept as is, 1 identifier, 2 comment
        (
            2 if openers and token.startswith(openers)
            else 1 if token.isidentifier() and token not in keywords
            else 0
            for token in vocabulary
        ),
        dtype=np.int8,
        count=len(vocabulary),
    )
    token_kinds = kinds[ids]
    kept = token_kinds != 2
    ids, token_kinds = ids[kept], token_kinds[kept]
    hashes = _hash_vocabulary(vocabulary, salt)[ids]
    is_identifier = token_kinds == 1
    names = ids[is_identifier]
    order = np.argsort(names, kind="stable")  # each name's occurrences, in file order
    repeat = names[order[1:]] == names[order[:-1]]
    distances = np.zeros(len(names), dtype=np.uint64)
    distances[order[1:][repeat]] = (order[1:][repeat] - order[:-1][repeat]).astype(np.uint64)
    with np.errstate(over="ignore"):
        hashes[is_identifier] = _mix(distances * MIX + np.uint64(salt) + MIX)
    return hashes, len(names)


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of every window of `n` consecutive token hashes (empty below n tokens)."""
    windows = len(hashes) - n + 1
    if windows <= 0:
        return np.empty(0, dtype=np.uint64)
    combined = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):  # a polynomial over the window, wrapping at 2**64
            combined = combined * MIX + hashes[offset : offset + windows]
    return _mix(combined)


def shingles(hashes: np.ndarray, n: int) -> np.ndarray:
    """Hashed n-grams of a token-hash stream as a (count, 1) uint64 array of 32-bit values, the input
    datatrove's MinHash signature expects (empty below n tokens)."""
    if len(hashes) < n:
        return EMPTY
    return (ngram_hashes(hashes, n) & np.uint64(0xFFFFFFFF)).reshape(-1, 1)


def word_shingles(text: str, n: int = 5) -> np.ndarray:
    """Hashed n-grams of the lower-cased `[A-Za-z_0-9]+` words of `text`."""
    return shingles(token_hashes(CODE_WORD.findall(text.lower())), n)


def cached_word_shingles(doc, n: int = 5) -> np.ndarray:
    """`word_shingles` of `doc.text`, kept in its metadata until a step replaces the text (PII redaction)."""
    cached = doc.metadata.get("_word_shingles")
    if cached is None or cached[0] is not doc.text or cached[1] != n:
        cached = doc.metadata["_word_shingles"] = (doc.text, n, word_shingles(doc.text, n))
    return cached[2]
