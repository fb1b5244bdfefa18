"""How long a study takes on this machine, from a few measured steps per arm (sizing a CPU budget).

    python benchmarks/study_budget.py RUN_DIR [--study moe-vs-dense] [--steps 12] [--threads 2]

For each arm it trains the arm's exact config (the recipe run's data, the study's overrides) for
`--steps` steps and one checkpoint, times a validation pass on a slice of each source (scaled to the
run's eval_tokens), then projects one full run as

    steps x (median step time, the first step left out)
    + (validation passes in the full run) x (one validation pass's time)

and the study as that sum over arms times seeds. It prints the arithmetic: tokens, steps, parameters
(total, activated, embeddings), tokens per parameter and the projected minutes. The machine's load
average is printed too: other jobs on shared cores slow the steps down.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from lingcoder.experiment import study_configs
from lingcoder.model.config import count_parameters
from lingcoder.runfiles import read_metrics
from lingcoder.study import Arm, Study
from lingcoder.train.config import pretrain_config_from_dict
from lingcoder.train.pretrain import pretrain

VAL_SLICE_TOKENS = 4096  # validation tokens per source actually timed


def measure(config: dict, tokens: Path, steps: int, seed: int, out: Path) -> dict:
    """Train `steps` steps of `config` (one validation pass at the end); the median step and that pass's seconds."""
    config = copy.deepcopy(config)
    per_step = pretrain_config_from_dict(config).tokens_per_step(1)
    phase = {**config["phases"][0], "tokens": steps * per_step}
    config["phases"] = [phase]
    config.setdefault("data", {})["tokens"] = str(tokens)
    full_eval_tokens = pretrain_config_from_dict(config).data.eval_tokens
    config["data"]["eval_tokens"] = pretrain_config_from_dict(config).data.seq_len  # one window: timed below
    config["train"].update(out=str(out), seed=seed, eval_every=10**9, checkpoint_every=10**9)
    start = time.perf_counter()
    pretrain(pretrain_config_from_dict(config), console=Console(quiet=True))
    wall = time.perf_counter() - start
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    step_times = [r["step_time_s"] for r in train[1:]]
    # One validation pass of the full run's size, timed on its own (on a slice of each source, scaled).
    from lingcoder.data.shards import TokenIndex
    from lingcoder.model.checkpoint import load_checkpoint
    from lingcoder.train.pretrain import validation_loss_sum

    pretrain_config = pretrain_config_from_dict(config)
    index = TokenIndex(pretrain_config.data.tokens)
    sources = sorted({s for p in pretrain_config.phases for s in p.mixture
                      if index.num_tokens(s, "val") > pretrain_config.data.seq_len})
    checkpoint = sorted((out / "checkpoints").iterdir())[-1]
    model = load_checkpoint(checkpoint, dtype=torch.float32).eval()
    sliced = min(full_eval_tokens, VAL_SLICE_TOKENS)
    clock = time.perf_counter()
    for source in sources:
        validation_loss_sum(model, index, source, pretrain_config.data.seq_len, sliced,
                            pretrain_config.train.micro_batch_size, torch.device("cpu"))
    val_s = (time.perf_counter() - clock) * full_eval_tokens / sliced  # a pass is linear in its tokens
    return {"step_s": statistics.median(step_times), "val_s": val_s, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--study", default="moe-vs-dense")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the study's cores)")
    parser.add_argument("--reference-tokens-per-s", type=float, default=0.0,
                        help="the recipe's own model's training throughput measured on an idle machine; given, "
                             "each arm is also projected from its step time relative to that model's, measured "
                             "side by side here (robust to other jobs slowing both)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    study, base, configs = study_configs(args.run_dir, args.study)
    _, _, recipe_configs = study_configs(args.run_dir, Study("recipe", [Arm("recipe")], tokens=study.tokens))
    configs = {"recipe model (reference)": recipe_configs["recipe"], **configs}
    print(f"study {study.name}: {len(configs) - 1} arms x {study.seeds} seeds; load average {os.getloadavg()[0]:.2f}, "
          f"{args.threads} torch threads")
    total_s = relative_s = 0.0
    reference_step_s = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in configs.items():
            full = pretrain_config_from_dict(config)
            steps = sum(full.phase_steps(1))
            tokens = steps * full.tokens_per_step(1)
            evals = steps // full.train.eval_every + len(full.phases)
            timing = measure(config, Path(args.run_dir) / "tokens", args.steps, 0, Path(tmp) / name)
            run_s = steps * timing["step_s"] + evals * timing["val_s"]
            if reference_step_s is None:
                reference_step_s = timing["step_s"]
                relative_run_s = None
            else:
                total_s += run_s * study.seeds
                # The same run at the reference's idle throughput, scaled by the side-by-side ratio.
                ratio = timing["step_s"] / reference_step_s
                reference = args.reference_tokens_per_s
                idle_step_s = full.tokens_per_step(1) / reference if reference else 0
                relative_run_s = run_s / timing["step_s"] * ratio * idle_step_s if idle_step_s else None
                relative_s += (relative_run_s or 0) * study.seeds
            total, active = count_parameters(full.model)
            m = full.model
            embeddings = m.vocab_size * m.hidden_size * (1 if m.tie_word_embeddings else 2)
            print(json.dumps({
                "arm": name, "total_params": total, "activated_params": active, "embedding_params": embeddings,
                "embedding_share_of_activated": round(embeddings / active, 3), "tokens": tokens, "steps": steps,
                "tokens_per_param": round(tokens / total, 2), "tokens_per_activated_param": round(tokens / active, 2),
                "step_s": round(timing["step_s"], 4), "val_pass_s": round(timing["val_s"], 2),
                "val_passes": evals, "step_time_over_reference": round(timing["step_s"] / reference_step_s, 3),
                "projected_run_min_here": round(run_s / 60, 2),
                "projected_run_min_at_reference_throughput": None if relative_run_s is None
                else round(relative_run_s / 60, 2)}))
    print(f"projected study here: {total_s / 60:.1f} minutes ({study.seeds} seeds; sum over arms of steps x step "
          f"time + validation passes x pass time); load average now {os.getloadavg()[0]:.2f}")
    if args.reference_tokens_per_s:
        print(f"projected study at the reference's {args.reference_tokens_per_s:,.0f} tokens/s: "
              f"{relative_s / 60:.1f} minutes (each arm's time here x the reference's idle step time / its step "
              "time here)")


if __name__ == "__main__":
    main()
