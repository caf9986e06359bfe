#!/usr/bin/env bash
# The test suite: set up .venv with the test extras, then pytest. No test collected is a failure.
# Extra arguments go to pytest, e.g.: scripts/test.sh tests/test_rank.py -x
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh test,search,export,openvino,timm,serve || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "scripts/test.sh: pytest collected no tests; that is a failure here" >&2
    exit 1
fi
exit "$rc"
