"""Fails unless a wheel is what we publish: tagged for glibc 2.17
(manylinux2014) as auditwheel sees it, with an extension that links no SQLite
library and a wheel that carries none (a copy beside Python's would mean two
SQLite libraries in one process). ``--any-tag`` checks only the SQLite part
(a wheel built from the sdist for this machine)."""

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("wheel")
parser.add_argument("--any-tag", action="store_true")
args = parser.parse_args()
wheel = args.wheel
with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory() as tmp:
    vendored = [n for n in z.namelist() if "sqlite" in n.rsplit("/", 1)[-1].lower()]
    if vendored:
        sys.exit(f"{wheel} carries SQLite: {vendored}")
    (native,) = [n for n in z.namelist() if n.startswith("fastcheckpoint/_native") and n.endswith(".so")]
    z.extract(native, tmp)
    dynamic = subprocess.run(
        ["readelf", "-d", str(Path(tmp) / native)], check=True, capture_output=True, text=True
    ).stdout
needed = [line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]
if not needed or [n for n in needed if "sqlite" in n.lower()]:
    sys.exit(f"{native} must link no SQLite library (NEEDED: {needed})")
if not args.any_tag:
    tags = Path(wheel).name.removesuffix(".whl").split("-")[-1].split(".")
    newest = max(
        (tuple(map(int, m.groups())) for t in tags if (m := re.match(r"manylinux_(\d+)_(\d+)_", t))),
        default=None,
    )
    if newest != (2, 17):
        sys.exit(f"{wheel}: platform tags {tags}, expected manylinux_2_17 (manylinux2014) and nothing newer")
    shown = subprocess.run(["auditwheel", "show", wheel], check=True, capture_output=True, text=True).stdout
    consistent = re.search(r'consistent with the following platform tag:\s*"([^"]+)"', " ".join(shown.split()))
    if not consistent or consistent.group(1) != "manylinux_2_17_x86_64":
        sys.exit(f"auditwheel does not find {wheel} consistent with manylinux_2_17_x86_64:\n{shown}")
print(f"{Path(wheel).name}: links {', '.join(needed)}; no SQLite inside")
