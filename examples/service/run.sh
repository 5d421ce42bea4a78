#!/usr/bin/env bash
# Try kaizen on a real service: creates a git repository holding the service's tunables
# (config/app.yaml, cache_mb: 64 — too small: ~270 ms per request), starts service.py on it, a
# load generator, and `kaizen run -v` beside them. Within ~15 minutes kaizen sees latency above
# 200 ms, waits for its baseline, commits cache_mb: 256 (the service reloads it: ~80 ms), and
# validates the change against its prediction. Ctrl-C stops everything.
#
#   examples/service/run.sh [DIR]          # DIR: where to create the repository (default: a temp dir)
#
# Environment: KAIZEN (the binary; default: `kaizen` on PATH, else target/{release,debug}/kaizen),
# SERVICE_PORT (8080), KAIZEN_LISTEN (127.0.0.1:9464), CLIENTS (4).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
kaizen="${KAIZEN:-}"
if [[ -z "$kaizen" ]]; then
  if command -v kaizen >/dev/null; then kaizen=kaizen
  elif [[ -x "$root/target/release/kaizen" ]]; then kaizen="$root/target/release/kaizen"
  elif [[ -x "$root/target/debug/kaizen" ]]; then kaizen="$root/target/debug/kaizen"
  else echo "no kaizen binary: cargo build --release -p kaizen-cli (or set KAIZEN)" >&2; exit 2
  fi
fi
port="${SERVICE_PORT:-8080}"
listen="${KAIZEN_LISTEN:-127.0.0.1:9464}"
clients="${CLIENTS:-4}"
dir="${1:-$(mktemp -d -t kaizen-service-XXXXXX)}"
repo="$dir/service"

mkdir -p "$repo/config"
cd "$repo"
if [[ ! -d .git ]]; then
  git init -q -b main
  git config user.name "Service Operator"
  git config user.email "operator@example.invalid"
  printf '# the service re-reads this file when it changes\ncache_mb: 64   # MiB\nworkers: 4\n' > config/app.yaml
  cat > kaizen.yaml <<YAML
repo: .
mode: autonomous
state_dir: .kaizen
signals:
  latency_ms:
    unit: ms
    better: lower
    alert_above: 200
    source: { http: "http://127.0.0.1:$port/health", field: latency_ms }
  error_rate:
    unit: ratio
    better: lower
    guardrail_for: [cache]
    source: { http: "http://127.0.0.1:$port/health", field: errors.rate }
rules: rules.yaml
guards:
  daily_budget: 5
  max_concurrent: 1
  dedup_window: 2h
validate:
  settle: 1m
schedule:
  observe_every: 15s
  cycle_every: 1m
  learn_every: 1h
serve:
  listen: "$listen"
YAML
  cat > rules.yaml <<'YAML'
rules:
  - id: grow-cache
    area: cache
    when: { signal: latency_ms, above: 200, for: 2m }
    change:
      - config_set: { file: config/app.yaml, key: cache_mb, value: 256 }
    predict: { signal: latency_ms, change: "-20%", within: 10m }
    risk: low
    confidence: 0.8
    rollback: revert
    because: "the working set no longer fits the cache; misses dominate latency"
YAML
  printf '/.kaizen/\n' >> .git/info/exclude
  git add -A
  git commit -q -m "the service and its tunables"
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo
  echo "repository: $repo   (git log --oneline; $kaizen interventions; $kaizen health)"
}
trap cleanup EXIT INT TERM

python3 "$here/service.py" --repo "$repo" --listen "127.0.0.1:$port" &
pids+=($!)
sleep 1
python3 "$here/load.py" --url "http://127.0.0.1:$port/work" --clients "$clients" &
pids+=($!)
sleep 2
echo "service on http://127.0.0.1:$port, kaizen's /health and /metrics on http://$listen"
echo "watch: curl -s http://$listen/health | less; git -C $repo log --oneline"
"$kaizen" -v run --config "$repo/kaizen.yaml" &
pids+=($!)
wait "${pids[-1]}"
