"""Image features: image loading (`images`), backbone extraction (`extract`), the memory-mapped
stores of conv maps, attention and co-attended nodes (`store`, `nodes`) and their batching. May
import the top-level modules, `pipeline.models` and the labelled-images table of `pipeline.data`.
"""
