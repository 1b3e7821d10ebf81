#!/usr/bin/env python3
"""Fails unless a wheel installs where PyTorch's wheels do (manylinux_2_28, glibc 2.28: RHEL/Rocky
8, Ubuntu 20.04 has 2.31): its platform tag says so, `auditwheel show` agrees, and no symbol of
its extension needs a glibc (or libgcc, libstdc++) version newer than the tag allows.

Usage: check_wheel.py WHEEL [--glibc 2.28]
"""

import argparse
import io
import re
import subprocess
import sys
import zipfile

from elftools.elf.elffile import ELFFile


def needed_versions(shared_object: bytes) -> dict[str, set[str]]:
    """Library -> the symbol versions (`GLIBC_2.17`, ...) the object requires of it."""
    elf = ELFFile(io.BytesIO(shared_object))
    section = elf.get_section_by_name(".gnu.version_r")
    needs: dict[str, set[str]] = {}
    if section is None:
        return needs
    for verneed, auxiliaries in section.iter_versions():
        needs.setdefault(verneed.name, set()).update(aux.name for aux in auxiliaries)
    return needs


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel")
    parser.add_argument("--glibc", default="2.28")
    args = parser.parse_args()
    limit = version(args.glibc)
    tag = f"manylinux_{args.glibc.replace('.', '_')}_x86_64"
    problems = []
    if tag not in args.wheel:
        problems.append(f"{args.wheel}: the platform tag is not {tag}")
    shown = subprocess.run([sys.executable, "-m", "auditwheel", "show", args.wheel], capture_output=True, text=True)
    constrained = re.search(r'platform tag to\s+"manylinux_(\d+)_(\d+)_x86_64"', shown.stdout.replace("\n", " "))
    if shown.returncode or not constrained:
        problems.append(f"auditwheel show {args.wheel}: {shown.stdout}{shown.stderr}")
    elif (int(constrained[1]), int(constrained[2])) > limit:
        problems.append(f"auditwheel: the extension needs manylinux_{constrained[1]}_{constrained[2]}")
    newest = (0,)
    with zipfile.ZipFile(args.wheel) as wheel:
        objects = [name for name in wheel.namelist() if name.endswith(".so")]
        if not objects:
            problems.append(f"{args.wheel}: no extension inside")
        for name in objects:
            for library, versions in needed_versions(wheel.read(name)).items():
                for v in versions:
                    if v.startswith("GLIBC_") and v[6:][0].isdigit():
                        newest = max(newest, version(v[6:]))
                        if version(v[6:]) > limit:
                            problems.append(f"{name}: needs {v} of {library}")
    for problem in problems:
        print(f"check_wheel: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.wheel}: {tag}, auditwheel agrees, newest glibc symbol version needed: "
              f"{'.'.join(map(str, newest))}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
