#!/usr/bin/env bash
# Every tier through tap. When something fails, the failures are printed again
# last, after the coverage table, so that the tail of a CI log names them.
set -uo pipefail
cd "$(dirname "$0")/.."
tap "$@"
rc=$?
if [ "$rc" -ne 0 ] && [ -d .tap/test-results ]; then
  echo "# tap exited $rc; the failed assertions, by test file:"
  grep -rn -A14 '^\s*not ok' .tap/test-results | sed 's#^\.tap/test-results/##' | head -250
fi
exit "$rc"
