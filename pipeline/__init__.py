"""MangoNet: metadata-neighbourhood image annotation (CVPR 2019) as a library.

Everything here is importable and free of command-line code; `stages/` holds the thin commands.
"""

from pipeline.errors import MangoError

__all__ = ["MangoError"]
