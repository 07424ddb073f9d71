"""Benchmarks behind `mango bench ...`: synthetic Zipf tag data (`data`), isolated timed runs of
the neighbour-search contenders (`runs`) and the GPU phase benchmark (`gpu`). May import anything.
"""
