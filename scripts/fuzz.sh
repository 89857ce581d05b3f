#!/usr/bin/env bash
# Runs every fuzz target in the tree in turn, each for $FUZZTIME (default 10s): every
# `func FuzzXxx(f *testing.F)` in a _test.go file is found, so none can be forgotten.
# Usage: FUZZTIME=10m scripts/fuzz.sh [regexp]   (regexp filters target names)
# A crasher is written by go test to the package's testdata/fuzz/FuzzXxx/; the script
# stops at the first failing target.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
# A failing input is minimized before it is reported; bound that (go test's default is 60 s)
# so that a short run reports its failure instead of ending while still minimizing.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-10s}
filter=${1:-.}
n=0
while IFS=: read -r file _ name; do
  [[ $name =~ $filter ]] || continue
  pkg=./$(dirname "$file")
  echo "== $name ($pkg, $FUZZTIME)"
  log=$(mktemp)
  if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" 2>&1 | tee "$log"; then
    # go test's fuzz coordinator may end a short run on a loaded machine with "context deadline
    # exceeded" and no failing input (its baseline coverage run outlived -fuzztime): run that
    # target once more; a real failure names its input and is not retried.
    if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
      echo "== $name: the fuzz engine ran out of time before fuzzing; once more"
      $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" || { rm -f "$log"; exit 1; }
    else
      rm -f "$log"
      exit 1
    fi
  fi
  rm -f "$log"
  n=$((n + 1))
done < <(git ls-files -co --exclude-standard '*_test.go' | xargs grep -oH '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' |
  sed -E 's/^([^:]*):func (Fuzz[A-Za-z0-9_]*)\(.*/\1:x:\2/' | sort -u)
echo "fuzz: $n targets passed ($FUZZTIME each)"
