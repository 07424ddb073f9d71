"""Training: the shared loop (`loop`: fit, predict, checkpoints), fine-tuning the backbone
(`finetune`) and InsAtten (`insatten`). May import the top level, `data` (the labelled
images), `features` and `models`.
"""
