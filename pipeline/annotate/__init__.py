"""Use the trained pipeline on new photos (`mango annotate`): the trained workspace (`workspace`)
and the annotation of a batch of photos with their owners' tags (`annotator`). May import
anything below `evaluation` (it runs the pipeline's own stages' code: features, InsAtten,
lemmatise, neighbours, the MangoNet trainer's prediction path).
"""
