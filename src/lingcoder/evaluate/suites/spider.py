"""Spider text-to-SQL, judged by execution accuracy on the released SQLite databases.

Reads the release's dev.json (or train_spider.json; a JSON list, or JSONL, of {db_id, question,
query}) and the databases at database/<db_id>/<db_id>.sqlite beside it. Task ids are
`spider/<index in the file>`. The prompt gives the database's schema (its CREATE statements) and the
question, and ends with `SELECT`, which a base model continues; a chat answer's ```sql block is taken
whole. In the sandbox the gold and the predicted query both run on a read-only copy of the database;
the prediction passes when the result sets are equal: as multisets of rows, or as lists when the
gold query has ORDER BY, with the columns in any order (as the Spider test suite compares them).
Limit: 30 s per query pair.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from lingcoder.errors import LingcoderError
from lingcoder.evaluate.benchmarks import Benchmark, BenchmarkOptions, Problem, read_rows
from lingcoder.evaluate.prompts import extract_code
from lingcoder.evaluate.suites import collect

SECONDS_PER_TASK = 30.0
DATABASE = "db.sqlite"

_JUDGE = """
import collections, itertools, sqlite3
_db = sqlite3.connect("file:DATABASE?mode=ro", uri=True)
_gold = _db.execute(_SPIDER_GOLD).fetchall()
try:
    _predicted = _db.execute(_SPIDER_PREDICTED).fetchall()
except (sqlite3.Error, sqlite3.Warning) as _exc:
    raise AssertionError(f"the predicted query fails: {_exc}")


def _same(predicted, gold):
    if len(predicted) != len(gold):
        return False
    if not gold:
        return True
    width = len(gold[0])
    if len(predicted[0]) != width:
        return False
    # Columns may come in another order (SELECT b, a for SELECT a, b), as the Spider test suite allows;
    # only orders whose columns hold the same values are tried.
    mine = [collections.Counter(r[i] for r in predicted) for i in range(width)]
    theirs = [collections.Counter(r[i] for r in gold) for i in range(width)]
    for order in itertools.islice(itertools.permutations(range(width)), 5040):
        if any(mine[i] != theirs[j] for j, i in enumerate(order)):
            continue
        rows = [tuple(r[i] for i in order) for r in predicted]
        if (rows == gold) if _SPIDER_ORDERED else (collections.Counter(rows) == collections.Counter(gold)):
            return True
    return False


assert _same(_predicted, _gold), (
    f"results differ{' (in order)' if _SPIDER_ORDERED else ''}: {len(_predicted)} rows vs {len(_gold)}; "
    f"{_predicted[:5]!r} vs {_gold[:5]!r}"
)
""".replace("DATABASE", DATABASE)


def predicted_query(completion: str) -> str:
    """The query of a completion: a whole query as is, else the continuation of the prompt's SELECT."""
    if "```" in completion:
        completion = extract_code(completion, "sql")
    text = completion.strip().rstrip(";").strip()
    text = text.split(";")[0]
    return text if re.match(r"(?is)\s*(select|with)\b", text) else f"SELECT {text}"


def program(gold: str, completion: str) -> str:
    ordered = bool(re.search(r"(?i)\border\s+by\b", gold))
    return (
        f"_SPIDER_GOLD = {gold!r}\n_SPIDER_PREDICTED = {predicted_query(completion)!r}\n"
        f"_SPIDER_ORDERED = {ordered}\n{_JUDGE}"
    )


def schema(database: Path) -> str:
    """The CREATE statements of a database (read-only)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL").fetchall()
    except sqlite3.Error as exc:
        raise LingcoderError(f"{database}: not a readable SQLite database ({exc})") from None
    return "\n".join(f"{sql.strip()};" for (sql,) in rows)


def _rows(path: Path):
    text = path.read_text(encoding="utf-8") if path.suffix == ".json" else ""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LingcoderError(f"{path}: not valid JSON ({exc.msg})") from None
        for i, row in enumerate(items):
            if not isinstance(row, dict):
                raise LingcoderError(f"{path}: item {i} is not an object")
            yield f"{path}:item {i}", row
    else:
        for _, where, row in read_rows(path):
            yield where, row


def load(name: str, path: Path, options: BenchmarkOptions) -> Benchmark:
    databases = path.parent / "database"
    schemas: dict[str, str] = {}

    def problems():
        for index, (where, row) in enumerate(_rows(path)):
            missing = [k for k in ("db_id", "question", "query") if k not in row]
            if missing:
                raise LingcoderError(f"{where}: missing field(s) {', '.join(missing)} (has: {', '.join(sorted(row))})")
            db_id, gold = str(row["db_id"]), row["query"]
            database = databases / db_id / f"{db_id}.sqlite"
            if not database.is_file():
                raise LingcoderError(
                    f"{where}: database {database} not found (Spider's databases live in database/ beside {path.name})"
                )
            if db_id not in schemas:
                schemas[db_id] = schema(database)
            text = (
                f"-- SQLite database {db_id}:\n{schemas[db_id]}\n\n"
                f"-- Using valid SQLite, answer the question with one query.\n-- Question: {row['question'].strip()}\n"
            )
            yield (
                where,
                Problem(
                    f"spider/{index}",
                    "python",
                    text + "SELECT",
                    "",
                    prompt_is_code=False,
                    reference=gold,
                    stop=(";", "\n\n", "```"),
                    instruction=text,
                    answer_language="sql",
                    make_solution=lambda completion, gold=gold: program(gold, completion),
                    timeout=SECONDS_PER_TASK,
                    data_files={DATABASE: database},
                ),
            )

    return Benchmark(name, collect(name, problems()))
