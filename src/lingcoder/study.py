"""Studies as data: what `lingcoder experiment RUN --study NAME` trains and compares (torch-free).

A study is a TOML file: the named ones ship in `lingcoder/studies/` (`moe-vs-dense`, `routing`,
`inference-k`, `curated-vs-raw`), and a user passes their own by path. Its keys:

    description = "..."          what the study asks
    kind = "train"               "train": each arm is a training run per seed;
                                 "inference": one model trained per seed (with `set`), each arm evaluates it
    seeds = 5                    training seeds per arm
    tokens = 2_000_000           pretraining tokens per run (the recipe's phases scaled to it; 0 = as configured)
    metrics = ["val_loss"]       what each run reports (see METRICS); the first is the study's headline
    baseline = "dense"           paired differences are every other arm minus this one, seed by seed
    set = ["model.hidden_size=96"]   overrides for every arm, in `--set` syntax, over the recipe's config

    [[arms]]
    name = "moe"
    set = []                     this arm's overrides (for "inference": model fields set at evaluation)
    data = "recipe"              recipe (the run's tokens and mixtures), curated-files, or raw

    [quick]                      the tiny-budget variant (`--quick`): replaces seeds and tokens, adds `set`
    seeds = 2
    tokens = 4096
    set = [...]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lingcoder.config import ConfigError, from_dict, load_toml, parse_override

KINDS = ("train", "inference")
DATA = ("recipe", "curated-files", "raw")
# metric -> True when lower is better
METRICS = {"val_loss": True, "heldout_loss": True, "humaneval_canonical_loss": True, "pass_at_1": False,
           "decode_ms_per_token": True}
TRAIN_METRICS = ("val_loss", "heldout_loss", "humaneval_canonical_loss", "pass_at_1")
INFERENCE_METRICS = ("val_loss", "decode_ms_per_token")


@dataclass
class Arm:
    name: str
    set: list[str] = field(default_factory=list)
    data: str = "recipe"


@dataclass
class QuickVariant:
    seeds: int = 2
    tokens: int = 4096
    set: list[str] = field(default_factory=list)


@dataclass
class Study:
    name: str
    arms: list[Arm]
    description: str = ""
    kind: str = "train"
    seeds: int = 5
    tokens: int = 0
    metrics: list[str] = field(default_factory=lambda: ["val_loss"])
    baseline: str = ""
    set: list[str] = field(default_factory=list)
    quick: QuickVariant | None = None
    source: str = ""  # the file it was read from

    @property
    def key(self) -> str:
        """Its name in results.json and its directory under RUN/experiment/."""
        return self.name

    def variant(self, quick: bool = False, seeds: int | None = None, tokens: int | None = None) -> Study:
        """The study as it will run: its quick variant if asked, then `seeds`/`tokens` if given."""
        study = self
        if quick:
            if self.quick is None:
                raise ConfigError(f"study {self.name!r} ({self.source}): no [quick] table, so no --quick variant")
            study = dataclasses.replace(self, name=f"{self.name}-quick", seeds=self.quick.seeds,
                                        tokens=self.quick.tokens, set=[*self.set, *self.quick.set], quick=None)
        study = dataclasses.replace(study, seeds=study.seeds if seeds is None else seeds,
                                    tokens=study.tokens if tokens is None else tokens)
        validate(study)
        return study


def shipped_studies() -> list[str]:
    """The names of the studies shipped in the package."""
    folder = resources.files("lingcoder") / "studies"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_study(name_or_path: str | Path) -> Study:
    """A shipped study by name, or a study TOML file by path; every key and value checked."""
    text = str(name_or_path)
    if text.endswith(".toml") or Path(text).is_file():
        path = Path(text)
        data = load_toml(path)
        where, name = str(path), path.stem
    else:
        known = shipped_studies()
        if text not in known:
            raise ConfigError(f"study {text!r}: unknown (shipped: {', '.join(known)}; or pass a .toml file)")
        resource = resources.files("lingcoder") / "studies" / f"{text}.toml"
        import tomllib

        data, where, name = tomllib.loads(resource.read_text()), f"study {text}", text
    data.setdefault("name", name)
    try:
        study = from_dict(Study, {**data, "source": where}, where=where)
    except ConfigError as exc:
        raise ConfigError(f"{exc}" if str(exc).startswith(where) else f"{where}: {exc}") from None
    validate(study)
    return study


def validate(study: Study) -> None:
    where = f"study {study.name!r} ({study.source or 'given'})"
    problems = []
    if study.kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}, got {study.kind!r}")
    if study.seeds < 1:
        problems.append(f"seeds must be >= 1, got {study.seeds}")
    if study.tokens < 0:
        problems.append(f"tokens must be >= 0, got {study.tokens}")
    if not study.arms:
        problems.append("at least one [[arms]] table is needed")
    names = [a.name for a in study.arms]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"arm names must be unique ({', '.join(duplicates)} repeated)")
    if study.baseline and study.baseline not in names:
        problems.append(f"baseline {study.baseline!r} is not an arm ({', '.join(names)})")
    allowed = TRAIN_METRICS if study.kind == "train" else INFERENCE_METRICS
    for metric in study.metrics:
        if metric not in allowed:
            problems.append(f"metric {metric!r} is not one a {study.kind} study measures ({', '.join(allowed)})")
    if not study.metrics:
        problems.append("metrics must name at least one metric")
    for arm in study.arms:
        if arm.data not in DATA:
            problems.append(f"arm {arm.name!r}: data must be one of {', '.join(DATA)}, got {arm.data!r}")
        for text in arm.set:
            keys, _ = parse_override(text)
            if study.kind == "inference" and keys[0] != "model":
                problems.append(f"arm {arm.name!r}: an inference arm sets model fields only (model.KEY=VALUE), "
                                f"got {text!r}")
        if study.kind == "inference" and arm.data != "recipe":
            problems.append(f"arm {arm.name!r}: an inference arm evaluates the trained model on the recipe's data")
    for text in study.set:
        parse_override(text)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def lower_is_better(metric: str) -> bool:
    return METRICS[metric]
