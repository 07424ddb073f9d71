"""Training: the shared loop (`loop`: fit, predict, checkpoints), fine-tuning the backbone
(`finetune`) and InsAtten (`insatten`). May import the top level, `features` and `models`.
"""
