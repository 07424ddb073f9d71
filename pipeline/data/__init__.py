"""Ingest: from a collection on disk to the prepared tables every later stage reads.

Owns the dataset adapters (`datasets/`), the synthetic world (`synthetic/`), the Flickr crawler
(`flickr/`), `prepare` (image checks, splits, validation protocol) and `tables` (the labelled
images and the predictions/truth files). May import the top-level modules and `pipeline.text`.
"""
