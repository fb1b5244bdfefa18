"""Run by the vLLM tests in the vLLM environment (no lingcoder there): for each checkpoint, load its config
with `transformers.AutoConfig` (trust_remote_code) and generate greedily with `vllm.LLM` from token ids.

    python vllm_greedy.py SPEC.json OUT.json

SPEC: {"runs": [{"model": DIR, "dtype": "bfloat16", "prompts": [[ids...]], "max_tokens": N}]}.
OUT:  {"runs": [{"config": {...}, "tokens": [[ids...]]}]}. One process for all checkpoints, the engine
and its worker inside it: importing vLLM is most of the cost.
"""

import gc
import json
import os
import sys


def main(spec_path: str, out_path: str) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from transformers import AutoConfig
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    spec = json.loads(open(spec_path).read())
    results = []
    for run in spec["runs"]:
        config = AutoConfig.from_pretrained(run["model"], trust_remote_code=True)
        llm = LLM(model=run["model"], dtype=run["dtype"], trust_remote_code=True, enforce_eager=True,
                  max_model_len=run.get("max_model_len", 256), seed=0,
                  kv_cache_memory_bytes=256 * 2**20, distributed_executor_backend="uni")
        params = SamplingParams(temperature=0.0, max_tokens=run["max_tokens"], ignore_eos=True)
        outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in run["prompts"]], params, use_tqdm=False)
        results.append({
            "config": {"class": type(config).__name__, "model_type": config.model_type,
                       **{k: getattr(config, k, None) for k in run.get("config_fields", [])}},
            "tokens": [list(o.outputs[0].token_ids) for o in outputs],
        })
        del llm
        gc.collect()
    with open(out_path, "w") as f:
        json.dump({"runs": results}, f, default=str)


if __name__ == "__main__":  # vLLM starts worker processes that re-import this file
    main(sys.argv[1], sys.argv[2])
