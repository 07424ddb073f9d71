"""Repair the DVC state files a killed `dvc` process can leave unreadable, before `dvc repro`.

DVC writes two of its own files in place, not through a temporary file and a rename:
- `.dvc/tmp/rwlock`, the JSON list of which running DVC process reads or writes which path. A
  kill during that write leaves it empty or cut off, and every later `dvc repro` stops with
  "Unable to read RWLock-file ... JSON structure is corrupted". The file only describes running
  processes (DVC itself drops the entries of dead ones), so when no DVC process runs in this
  repository an unreadable one holds nothing: it is removed.
- `dvc.lock`, the record of what each stage was run with. When it no longer parses as YAML, or
  parses but fails DVC's lock-file schema (cut off inside a stage), it is moved aside to
  `dvc.lock.corrupt-<time>` (kept for inspection) and `dvc repro` takes each stage's outputs
  back from DVC's run-cache instead of running it again (`git checkout dvc.lock` is the other
  way back).

Nothing is touched while a DVC process runs in the repository, nor when the files parse. Prints
one line per repair; exit 0 when the state is usable (repaired or already fine), 1 when a DVC
process is running and a file is unreadable.

    python scripts/repair_dvc_state.py [REPO]      # `make repro` runs it first
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml


def running_dvc(repo: Path) -> list[int]:
    """Pids of the DVC processes (other than this one and DVC's background `dvc daemon`) whose
    working directory is inside `repo`."""
    import psutil  # a DVC dependency

    repo = repo.resolve()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = proc.info
        if info["pid"] == os.getpid() or not info.get("cmdline") or not info.get("cwd"):
            continue
        args = info["cmdline"]
        at = next((i for i, arg in enumerate(args[:3]) if Path(arg).name == "dvc"), None)  # dvc ..., python -m dvc ...
        if at is None or args[at + 1:at + 2] == ["daemon"]:  # DVC's background updater holds no lock
            continue
        cwd = Path(info["cwd"])
        if cwd == repo or repo in cwd.parents:
            found.append(info["pid"])
    return found


def unreadable_rwlock(path: Path) -> str | None:
    """Why DVC cannot use the rwlock file at `path` ("is empty", ...), or None (absent or well-formed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return f"is unreadable ({exc})"
    if not text.strip():
        return "is empty"
    try:
        lock = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"is not JSON ({exc.msg} at char {exc.pos})"
    from dvc.rwlock import SCHEMA  # DVC's own check of the file
    from voluptuous import Invalid

    try:
        SCHEMA(lock)
    except Invalid as exc:
        return f"is not a DVC rwlock ({exc})"
    return None


def unreadable_lockfile(path: Path) -> str | None:
    """Why DVC cannot read dvc.lock at `path`, or None (absent or valid). A file cut off mid-write
    may be empty, or parse as YAML and fail DVC's schema (a stage without its `cmd`)."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA  # DVC's own check of the file
    from voluptuous import Invalid

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"does not parse ({str(exc).splitlines()[0]})"
    if doc is None:  # DVC empties the file before writing it: killed in between, nothing is left
        return "is empty"
    try:
        COMPILED_LOCKFILE_SCHEMA(doc)
    except Invalid as exc:
        return f"fails DVC's lock-file schema ({exc})"
    return None


def repair(repo: Path, echo=print) -> tuple[bool, list[str]]:
    """Repair `repo`'s DVC state files; (usable, one description per repair)."""
    problems = []
    rwlock = repo / ".dvc" / "tmp" / "rwlock"
    lockfile = repo / "dvc.lock"
    why_rw, why_lock = unreadable_rwlock(rwlock), unreadable_lockfile(lockfile)
    if why_rw is None and why_lock is None:
        return True, []
    busy = running_dvc(repo)
    if busy:
        echo(f"DVC state: {rwlock if why_rw else lockfile} {why_rw or why_lock}, but DVC is running in "
             f"{repo} (pid {', '.join(map(str, busy))}); not touched: wait for it, or stop it and run this again")
        return False, []
    if why_rw:
        rwlock.unlink()
        problems.append(f"removed {rwlock.relative_to(repo)}, which {why_rw} (left by a killed DVC process, it held no lock)")
    if why_lock:
        aside = lockfile.with_name(f"dvc.lock.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        lockfile.replace(aside)
        problems.append(f"moved {lockfile.name}, which {why_lock}, to {aside.name}; `dvc repro` restores the "
                        f"stages from DVC's run-cache (or `git checkout dvc.lock`)")
    for line in problems:
        echo(f"DVC state: {line}")
    return True, problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    repo = Path(argv[0]) if argv else Path.cwd()
    if not (repo / ".dvc").is_dir():
        print(f"repair_dvc_state: {repo} is not a DVC repository (no .dvc/)", file=sys.stderr)
        return 2
    usable, _ = repair(repo)
    return 0 if usable else 1


if __name__ == "__main__":
    sys.exit(main())
