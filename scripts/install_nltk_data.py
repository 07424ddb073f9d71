"""Install NLTK's WordNet data for `lemmatise` (run by scripts/setup.sh).

    python scripts/install_nltk_data.py          # install if needed, say which route was used
    python scripts/install_nltk_data.py --check  # exit 1 if WordNet is not usable
"""

from __future__ import annotations

import logging
import sys

from pipeline.nltk_data import data_dir, ensure_wordnet, wordnet_ok


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if "--check" in argv:
        return 0 if wordnet_ok() else 1
    route = ensure_wordnet()
    messages = {
        "present": "WordNet data already installed",
        "download": f"WordNet data downloaded with nltk.download into {data_dir()}",
        "debian": f"WordNet data installed offline from Debian's wordnet-base into {data_dir()}",
    }
    print(f"set-up: {messages[route]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
