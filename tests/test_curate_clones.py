"""Renamed copies (type-2 clones) are deduplicated; files that only share boilerplate are not.

End to end through `lingcoder curate` on a JSONL corpus: a Python module copied with every
identifier renamed, a JavaScript module renamed and reformatted, two Java classes with the
same getter/setter structure but different fields, and a chain of five renamed files in which
each is a near copy of the next but the two ends are not. The second run turns the
renaming-proof view off (`curate.dedup.renamed_copies=false`), showing that word shingles alone keep
both copies; the third drops every member of a MinHash cluster but the best
(`curate.dedup.min_similarity=0`, datatrove's behaviour), showing that the chain is one cluster.
"""

from __future__ import annotations

import json
import keyword
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lingcoder.config import load_stage_config
from lingcoder.data.clones import clone_token_hashes, shingles
from lingcoder.data.curate import CurateConfig
from lingcoder.errors import LingcoderError

LEDGER = '''"""A small double-entry ledger."""

from collections import defaultdict
from decimal import Decimal


class Ledger:
    """Accounts and the transfers between them."""

    def __init__(self, currency="EUR"):
        self.currency = currency
        self.balances = defaultdict(Decimal)
        self.history = []

    def transfer(self, source, target, amount):
        """Move `amount` from `source` to `target`; refuse overdrafts."""
        amount = Decimal(amount)
        if amount <= 0:
            raise ValueError("amount must be positive")
        if self.balances[source] < amount:
            raise ValueError("insufficient funds in " + source)
        self.balances[source] -= amount
        self.balances[target] += amount
        self.history.append((source, target, amount))
        return len(self.history)

    def deposit(self, account, amount):
        """Add money from outside the ledger."""
        self.balances[account] += Decimal(amount)
        self.history.append((None, account, Decimal(amount)))

    def statement(self, account):
        """Every movement of `account`, signed, oldest first."""
        lines = []
        for source, target, amount in self.history:
            if source == account:
                lines.append(-amount)
            elif target == account:
                lines.append(amount)
        return lines

    def total(self):
        """The sum of all balances (deposits minus nothing: transfers cancel out)."""
        return sum(self.balances.values(), Decimal(0))
'''

CART = """// Shopping cart with discounts.
export class Cart {
  constructor(taxRate) {
    this.items = [];
    this.taxRate = taxRate;
  }

  add(product, quantity) {
    const existing = this.items.find((line) => line.product.id === product.id);
    if (existing) {
      existing.quantity += quantity;
    } else {
      this.items.push({ product, quantity });
    }
    return this.items.length;
  }

  subtotal() {
    let total = 0;
    for (const line of this.items) {
      total += line.product.price * line.quantity;
    }
    return total;
  }

  total(discount) {
    const net = this.subtotal() * (1 - discount);
    return Math.round(net * (1 + this.taxRate) * 100) / 100;
  }
}
"""

# The same code, renamed and reformatted by hand: other indentation, braces and line breaks,
# the comment gone and a new one elsewhere.
BASKET = """export class Basket
{
    constructor(vat)
    {
        this.rows = [];  this.vat = vat;
    }
    put(article, count)
    {
        // merge with an existing row
        const found = this.rows.find((row) => row.article.id === article.id);
        if (found) { found.count += count; }
        else { this.rows.push({ article, count }); }
        return this.rows.length;
    }
    gross()
    {
        let sum = 0;
        for (const row of this.rows) { sum += row.article.price * row.count; }
        return sum;
    }
    due(rebate)
    {
        const value = this.gross() * (1 - rebate);
        return Math.round(value * (1 + this.vat) * 100) / 100;
    }
}
"""

CUSTOMER = """package shop.model;

/** A customer of the shop. */
public class Customer {
    private String name;
    private String email;
    private int age;

    public Customer(String name, String email, int age) {
        this.name = name;
        this.email = email;
        this.age = age;
    }

    public String getName() {
        return name;
    }

    public void setName(String name) {
        this.name = name;
    }

    public String getEmail() {
        return email;
    }

    public void setEmail(String email) {
        this.email = email;
    }

    public int getAge() {
        return age;
    }

    public void setAge(int age) {
        this.age = age;
    }

    @Override
    public String toString() {
        return "Customer{name=" + name + ", email=" + email + ", age=" + age + "}";
    }
}
"""

INVOICE = """package billing.domain;

/** An invoice sent to a client. */
public class Invoice {
    private long number;
    private double amount;
    private boolean paid;

    public Invoice(long number, double amount, boolean paid) {
        this.number = number;
        this.amount = amount;
        this.paid = paid;
    }

    public long getNumber() {
        return number;
    }

    public void setNumber(long number) {
        this.number = number;
    }

    public double getAmount() {
        return amount;
    }

    public void setAmount(double amount) {
        this.amount = amount;
    }

    public boolean isPaid() {
        return paid;
    }

    public void setPaid(boolean paid) {
        this.paid = paid;
    }

    @Override
    public String toString() {
        return "Invoice #" + number + ": " + amount + (paid ? " (paid)" : " (due)");
    }
}
"""

STRING_OR_NAME = re.compile(r'"""[\s\S]*?"""|"[^"\n]*"|\'[^\'\n]*\'|[A-Za-z_]\w*')


def rename_every_identifier(source: str, prefix: str = "z") -> str:
    """Each identifier that is not a keyword gets a new name, consistently; strings stay as they are."""

    def renamed(match):
        token = match.group(0)
        if token[0] in "\"'" or keyword.iskeyword(token):
            return token
        return prefix + token[::-1] + "_" + str(len(token))  # one-to-one: no two names collide

    return STRING_OR_NAME.sub(renamed, source)


def rule(number: int) -> str:
    """One of many functions of the same shape whose literals differ."""
    return (
        f"def rule_{number}(record, limits):\n"
        f"    # the limits of field {number}\n"
        f'    label = record.get("field {number}", "default {number}")\n'
        f'    if label in ("alpha {number}", "beta {number}"):\n'
        f"        return limits.clip(label, {number}, {number * 7 + 3})\n"
        f'    return "rule {number}: " + label\n\n'
    )


# Five files of 20 rules each, each starting one rule later than the one before and renamed its own
# way: neighbours share 19 of 21 rules (renaming-proof Jaccard 0.90), the first and the last 16 of
# 24 (0.67). MinHash joins them all into one cluster.
CHAIN = [rename_every_identifier("".join(rule(n) for n in range(start, start + 20)), f"v{start}") for start in range(5)]


def jaccard(a: str, b: str, language: str) -> float:
    first, second = (set(shingles(clone_token_hashes(t, language)[0], 5).ravel().tolist()) for t in (a, b))
    return len(first & second) / len(first | second)


def test_renaming_proof_shingles_ignore_renames_and_layout_but_not_content():
    ledger_renamed = rename_every_identifier(LEDGER)
    assert "Ledger" not in ledger_renamed.replace('"""A small double-entry ledger."""', "")
    assert jaccard(LEDGER, ledger_renamed, "Python") == 1.0
    assert jaccard(CART, BASKET, "JavaScript") > 0.85
    assert jaccard(CUSTOMER, INVOICE, "Java") < 0.3
    assert jaccard(CHAIN[0], CHAIN[1], "Python") > 0.85 and jaccard(CHAIN[3], CHAIN[4], "Python") > 0.85
    assert jaccard(CHAIN[0], CHAIN[3], "Python") > 0.7 > jaccard(CHAIN[0], CHAIN[4], "Python")


def curate_cli(tmp_path: Path, corpus: Path, name: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path / name
    cmd = [sys.executable, "-m", "lingcoder", "curate", str(corpus), "--out", str(out), "--workers", "1", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    dropped = {}
    for path in sorted((out / "dropped").rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            dropped[(row["repo"], row["path"])] = row
    return result, dropped, out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("clones")
    records = [
        ("upstream/ledger", "ledger/core.py", LEDGER, 40),
        ("fork/books", "books/core.py", rename_every_identifier(LEDGER), 3),
        ("upstream/shop", "src/cart.js", CART, 12),
        ("fork/store", "lib/basket.js", BASKET, 2),
        ("acme/shop", "src/main/java/shop/model/Customer.java", CUSTOMER, 5),
        ("acme/billing", "src/main/java/billing/domain/Invoice.java", INVOICE, 5),
        *((f"chain/link{i}", "rules.py", text, 10 - i) for i, text in enumerate(CHAIN)),
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"repo": r, "path": p, "content": c, "stars": s}) + "\n" for r, p, c, s in records)
    )
    return {
        "with": curate_cli(tmp_path, corpus, "with"),
        "without": curate_cli(tmp_path, corpus, "without", "--set", "curate.dedup.renamed_copies=false", "--verbose"),
        "unverified": curate_cli(tmp_path, corpus, "unverified", "--set", "curate.dedup.min_similarity=0"),
    }


def test_renamed_copies_are_dropped_and_the_starred_copy_kept(runs):
    _, dropped, _ = runs["with"]
    books = dropped[("fork/books", "books/core.py")]
    assert books["reason"] == "near_duplicate" and books["detail"] == "kept upstream/ledger/ledger/core.py"
    basket = dropped[("fork/store", "lib/basket.js")]
    assert basket["reason"] == "near_duplicate" and basket["detail"] == "kept upstream/shop/src/cart.js"
    assert ("upstream/ledger", "ledger/core.py") not in dropped and ("upstream/shop", "src/cart.js") not in dropped


def test_same_boilerplate_different_code_is_kept(runs):
    for _, dropped, _ in (runs["with"], runs["without"]):
        assert ("acme/shop", "src/main/java/shop/model/Customer.java") not in dropped
        assert ("acme/billing", "src/main/java/billing/domain/Invoice.java") not in dropped


def test_a_chain_of_near_copies_keeps_its_far_end(runs):
    _, unverified, _ = runs["unverified"]  # MinHash clusters the five files together ...
    assert [("chain/link0", "rules.py") in unverified] + [
        unverified[(f"chain/link{i}", "rules.py")]["detail"] for i in range(1, 5)
    ] == [False] + ["kept chain/link0/rules.py"] * 4
    _, dropped, _ = runs["with"]  # ... but the last is not a copy of the kept first one
    assert [dropped[(f"chain/link{i}", "rules.py")]["detail"] for i in range(1, 4)] == ["kept chain/link0/rules.py"] * 3
    assert ("chain/link0", "rules.py") not in dropped and ("chain/link4", "rules.py") not in dropped


def test_min_similarity_outside_zero_to_one_is_refused():
    with pytest.raises(LingcoderError, match=r"dedup.min_similarity must be in \[0, 1\], got 1.5"):
        load_stage_config(CurateConfig, "curate", None, ["curate.dedup.min_similarity=1.5"], {"out": "o"})


def test_word_shingles_alone_keep_renamed_copies(runs):
    _, dropped, _ = runs["without"]
    assert ("fork/books", "books/core.py") not in dropped and ("fork/store", "lib/basket.js") not in dropped


def test_console_is_quiet_unless_verbose(runs):
    quiet, _, out = runs["with"]
    console = quiet.stdout + quiet.stderr
    assert "documents in" in quiet.stdout  # the funnel table
    assert not [line for line in console.splitlines() if "INFO" in line or "SUCCESS" in line], console[-2000:]
    task_log = (out / "_work/logs/filter/logs/task_00000.log").read_text()
    assert "Launching pipeline" in task_log and "INFO" in task_log  # the logs went to the run's files
    assert "Reading dup files" not in console  # datatrove's progress bar, in its task's file instead
    assert "Reading dup files" in (out / "_work/logs/minhash_clusters/logs/task_00000.stderr").read_text()
    verbose, _, _ = runs["without"]
    assert "Launching pipeline" in verbose.stderr and "INFO" in verbose.stderr
