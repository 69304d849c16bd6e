"""Fails unless the wheel links the shared libsqlite3.so.0 and carries no copy
of SQLite of its own (a vendored copy would mean two SQLite libraries in a
process that also uses Python's sqlite3)."""

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

(wheel,) = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory() as tmp:
    vendored = [n for n in z.namelist() if "sqlite" in n.rsplit("/", 1)[-1].lower()]
    if vendored:
        sys.exit(f"{wheel} vendors SQLite: {vendored}")
    (native,) = [n for n in z.namelist() if n.startswith("fastcheckpoint/_native") and n.endswith(".so")]
    z.extract(native, tmp)
    dynamic = subprocess.run(
        ["readelf", "-d", str(Path(tmp) / native)], check=True, capture_output=True, text=True
    ).stdout
needed = [line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]
if "libsqlite3.so.0" not in needed:
    sys.exit(f"{native} does not link libsqlite3.so.0 (NEEDED: {needed})")
print(f"{Path(wheel).name}: links {', '.join(needed)}; no SQLite inside")
