"""Dataset adapters: each reads an official on-disk layout into the shared prepared tables.

An adapter returns a `Prepared`; `pipeline.data.prepare` validates images, splits and writes it.
"""

from pipeline.data.datasets.base import Prepared

__all__ = ["Prepared"]
