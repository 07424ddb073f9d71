"""Evaluation: the eight metrics (`metrics`, top level only, so methods may score validation with
it), the report and its tables (`report`), the paper's published numbers (`paper`), the figures and
the CI metric gate (`gate`). `report` and `figures` sit above `methods` and may import it.
"""
