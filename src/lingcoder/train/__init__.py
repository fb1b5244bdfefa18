"""Training: pretraining (`pretrain`), SFT (`sft`) and DPO (`dpo`) on one trainer core (`trainer`)."""
