"""The optional learned quality classifier (the paper trains fastText on teacher-LLM labels).

Trained from a labelled JSONL (`content` plus `label`: 1/true = high quality, 0/false = not)
with scikit-learn: hashed word uni- and bi-grams of `[A-Za-z_0-9]+` tokens and a logistic
regression. Hashing keeps the model a plain weight vector, saved as `.npz` (no pickle) and
applied in the quality step as `classifier_prob`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lingcoder.errors import LingcoderError
from lingcoder.jsonl import JsonlReader

N_FEATURES = 2**18
TOKEN_PATTERN = r"[A-Za-z_0-9]+"


def _vectorizer():
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=N_FEATURES,
        token_pattern=TOKEN_PATTERN,
        ngram_range=(1, 2),
        lowercase=False,
        alternate_sign=False,
        norm="l2",
    )


def read_labelled(path: str) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    try:
        lines = list(JsonlReader(path))
    except LingcoderError as exc:
        raise LingcoderError(f"classifier data {exc}") from None
    for line in lines:
        record = line.value
        if not isinstance(record.get("content"), str) or record.get("label") not in (0, 1, True, False):
            raise LingcoderError(
                f"classifier data {line.where}: need `content` (string) and `label` (0/1 or false/true)"
            )
        texts.append(record["content"])
        labels.append(int(record["label"]))
    if len(set(labels)) < 2:
        raise LingcoderError(
            f"classifier data {path}: need examples of both labels, got {sorted(set(labels))}"
        )
    return texts, labels


@dataclass
class QualityClassifier:
    coef: np.ndarray
    intercept: float

    @classmethod
    def train(cls, path: str) -> QualityClassifier:
        from sklearn.linear_model import LogisticRegression

        texts, labels = read_labelled(path)
        model = LogisticRegression(max_iter=1000, C=4.0).fit(_vectorizer().transform(texts), labels)
        return cls(model.coef_[0].astype(np.float32), float(model.intercept_[0]))

    def save(self, path: str) -> None:
        np.savez(path, coef=self.coef, intercept=np.array([self.intercept]))

    @classmethod
    def load(cls, path: str) -> QualityClassifier:
        try:
            data = np.load(path)
            return cls(data["coef"], float(data["intercept"][0]))
        except (OSError, KeyError, ValueError) as exc:
            raise LingcoderError(f"quality classifier {path}: cannot load ({exc})") from None

    def probability(self, text: str) -> float:
        logit = float((_vectorizer().transform([text]) @ self.coef)[0]) + self.intercept
        return float(1 / (1 + np.exp(-logit)))
