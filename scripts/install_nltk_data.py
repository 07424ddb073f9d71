"""Install NLTK's WordNet data for `lemmatise`, into `<venv>/nltk_data` (run by scripts/setup.sh).

    python scripts/install_nltk_data.py          # install if needed, say which route was used
    python scripts/install_nltk_data.py --check  # exit 1 if WordNet is not usable

First the normal route (`nltk.download`). Machines without internet fall back to Debian's
`wordnet-base` and `wordnet-sense-index` packages (WordNet 3.0 in /usr/share/wordnet, installed
with apt-get when we are root and they are missing), copied into NLTK's data path together with
the `lexnames` table that Debian ships only as the man page lexnames(5WN).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DEBIAN_WORDNET = Path("/usr/share/wordnet")
DEBIAN_LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")
CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def data_dir() -> Path:
    """`<sys.prefix>/nltk_data`: on NLTK's search path whenever this interpreter runs."""
    return Path(sys.prefix) / "nltk_data"


def wordnet_ok() -> bool:
    try:
        from nltk.corpus import wordnet
        from nltk.stem import WordNetLemmatizer

        wordnet.ensure_loaded()
        lem = WordNetLemmatizer()
        return lem.lemmatize("geese") == "goose" and lem.lemmatize("running", "v") == "run"
    except Exception:  # LookupError when missing, OSError on a broken copy
        return False


def lexnames_from_man(man_page: Path) -> str:
    """The lexnames table (`NN<TAB>name<TAB>category`) parsed from the lexnames(5WN) man page."""
    rows = []
    for line in gzip.decompress(man_page.read_bytes()).decode().splitlines():
        m = re.match(r"^(\d\d)\t(\w+)\.(\w+)\s*\t", line)
        if m:
            number, pos, name = m.groups()
            rows.append(f"{number}\t{pos}.{name}\t{CATEGORY[pos]}")
    if len(rows) != 45:
        raise RuntimeError(f"{man_page}: expected 45 lexicographer files, parsed {len(rows)}")
    return "\n".join(rows) + "\n"


def install_from_debian(target: Path) -> None:
    if not DEBIAN_WORDNET.is_dir() or not DEBIAN_LEXNAMES_MAN.exists():
        if os.geteuid() != 0:
            raise RuntimeError("WordNet is neither downloadable nor in /usr/share/wordnet, and installing "
                               "Debian's wordnet-base needs root: run `sudo apt-get install wordnet-base "
                               "wordnet-sense-index` and `make setup` again")
        log.info("installing Debian packages wordnet-base and wordnet-sense-index")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wordnet-base", "wordnet-sense-index"], check=True, env=env)
    corpus = target / "corpora" / "wordnet"
    tmp = corpus.with_name("wordnet.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in DEBIAN_WORDNET.iterdir():
        if f.name.startswith(("data.", "index.")) or f.suffix == ".exc" or f.name == "cntlist.rev":
            shutil.copy2(f, tmp / f.name)
    (tmp / "lexnames").write_text(lexnames_from_man(DEBIAN_LEXNAMES_MAN))
    shutil.rmtree(corpus, ignore_errors=True)
    os.replace(tmp, corpus)


def ensure_wordnet() -> str:
    """Make WordNet usable; return the route taken: present, download or debian."""
    if wordnet_ok():
        return "present"
    import nltk

    target = data_dir()
    target.mkdir(parents=True, exist_ok=True)
    if target.as_posix() not in nltk.data.path:
        nltk.data.path.insert(0, target.as_posix())
    try:
        downloaded = nltk.download("wordnet", download_dir=target.as_posix(), quiet=True, raise_on_error=True)
    except Exception as exc:  # offline: URLError, or NLTK's own refusal
        log.info("nltk.download('wordnet') failed: %s", exc)
        downloaded = False
    if downloaded and wordnet_ok():
        return "download"
    install_from_debian(target)
    if not wordnet_ok():
        raise RuntimeError(f"WordNet copied into {target} but NLTK still cannot lemmatise with it")
    return "debian"


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
