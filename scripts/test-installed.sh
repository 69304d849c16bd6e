#!/usr/bin/env bash
# Tests what users install: the wheel in dist/ (scripts/wheel.sh), installed
# into a fresh venv per CPython (scripts/install-wheel.sh). The whole suite
# runs on 3.11; 3.10, 3.12, 3.13 and the distribution's own /usr/bin/python3
# ("system": a build that loads extensions) run every suite that touches the
# interpreter or a database (codec, writer traces, SQLite and the routes to
# its library, Postgres, conformance, async savers, real graphs, encryption).
set -euo pipefail
cd "$(dirname "$0")/.."
subset=(tests/test_codec_compat.py tests/test_codec_security.py tests/test_writer_traces.py tests/test_sqlite.py
        tests/test_sqlite_library.py
        tests/test_conformance.py tests/test_postgres.py tests/test_postgres_conformance.py
        tests/test_pgbouncer.py tests/test_graph_features.py tests/test_async_savers.py tests/test_encryption.py)
for version in ${FC_PYTHONS:-3.11 3.10 3.12 3.13 system}; do
  bash scripts/install-wheel.sh "$version"
  if [ "$version" = 3.11 ]; then
    bash scripts/pytest.sh ".venv-$version"
  else
    bash scripts/pytest.sh ".venv-$version" "${subset[@]}"
  fi
done
