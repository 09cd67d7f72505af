#!/usr/bin/env bash
# The long simulator count (bench/SIMULATOR.md): schedules run on one version of the code the
# simulator drives, in chunks of 10,000 seeds, with a log line per chunk naming that version.
#
#   scripts/simulate-count.sh key                    the version key of the working tree's HEAD
#   scripts/simulate-count.sh run LANE FIRST CHUNKS  runs CHUNKS chunks from seed FIRST (niced), logging
#                                                    to .sim-count/lane-LANE.log; one lane per core
#   scripts/simulate-count.sh summary                schedules and broken seeds per version key
#
# The key hashes what decides a schedule's outcome: the library (src/), the simulator (test/sim/,
# scripts/simulate.ts) and the locked dependencies. A commit that changes none of them (docs, other
# tests) keeps the count; anything else starts a new one.
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=.sim-count

key() {
  git rev-parse HEAD:src HEAD:test/sim HEAD:scripts/simulate.ts HEAD:package-lock.json | sha1sum | cut -c1-12
}

case "${1:-}" in
  key)
    key
    ;;
  run)
    lane=$2 first=$3 chunks=$4
    if [ -n "$(git status --porcelain -- src test/sim scripts/simulate.ts package-lock.json)" ]; then
      echo "uncommitted changes under src/, test/sim/ or the lock: the count must run on a commit" >&2
      exit 2
    fi
    mkdir -p "$LOGS"
    k=$(key) commit=$(git rev-parse --short HEAD)
    for ((i = 0; i < chunks; i++)); do
      seed=$((first + i * 10000))
      out=$(nice -n 19 node --import tsx scripts/simulate.ts --seed "$seed" --runs 10000 --quiet 2>&1) && code=0 || code=$?
      summary=$(printf '%s\n' "$out" | grep -E '^[0-9]+ schedules|^  ' | tr '\n' ' ')
      printf '%s key=%s commit=%s seed=%s exit=%s %s\n' "$(date -u +%FT%TZ)" "$k" "$commit" "$seed" "$code" "$summary" >> "$LOGS/lane-$lane.log"
    done
    ;;
  summary)
    cat "$LOGS"/lane-*.log 2>/dev/null | awk '
      { k = ""; for (i = 1; i <= NF; i++) if ($i ~ /^key=/) k = substr($i, 5)
        if (match($0, / [0-9]+ schedules/)) n[k] += substr($0, RSTART + 1, RLENGTH - 11)
        if ($0 ~ /exit=[1-9]/) { bad[k]++; line[k] = line[k] "\n    " $0 } }
      END { for (k in n) { printf "key %s: %d schedules, %d chunk(s) with a broken invariant%s\n", k, n[k], bad[k] + 0, line[k] } }'
    ;;
  *)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
