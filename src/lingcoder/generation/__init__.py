"""Generation shared by serving, evaluation, synthesis, training and the report: sampling settings and
stop strings (`sampling`), a checkpoint's chat template (`chat_template`), batched KV-cached decoding
(`generate`). Only `generate` needs torch.
"""
