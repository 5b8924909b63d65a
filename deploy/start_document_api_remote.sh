#!/usr/bin/env bash
# Start the deployment guide's document API against a remote vLLM server.
#
#   ./start_document_api_remote.sh [vllm_url] [vllm_port] [api_port] [api_host]
#
# Run `./start_document_api_remote.sh --help` for the environment variables.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./start_document_api_remote.sh [vllm_url] [vllm_port] [api_port] [api_host]

Start the document API (python -m ocrflux.document_api_server_remote) against vLLM.

Arguments (each falls back to the environment variable of the same name, then the default):
  vllm_url    base URL of the vLLM server(s), comma-separated  VLLM_URL  (default: http://localhost)
  vllm_port   port added to vllm_url entries without one        VLLM_PORT (default: 8003)
  api_port    port the API listens on                           API_PORT  (default: 8001)
  api_host    address the API listens on                        API_HOST  (default: 0.0.0.0)

Environment:
  MODEL_NAME              served model name            (default: ChatDOC/OCRFlux-3B)
  SKIP_CROSS_PAGE_MERGE   true | false                 (default: false)
  MAX_PAGE_RETRIES        attempts per model task      (default: 1)
  OCRFLUX_MODE            direct | kafka; kafka also needs KAFKA_BOOTSTRAP_SERVERS
  API_KEYS, REDIS_URL     and the API's other settings are passed through unchanged
  VLLM_HEALTH_TIMEOUT     seconds for the vLLM health check        (default: 5)
  OCRFLUX_PYTHON          the Python to run   (default: .venv/bin/python of this checkout,
                          else python3)

Before starting, the script checks {vllm_url}:{vllm_port}/health and warns if vLLM does not
answer; the API starts either way (it reports vLLM's state on its own /health).
EOF
}

die() {
  echo "start_document_api_remote.sh: error: $*" >&2
  exit 2
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
esac
[ $# -le 4 ] || die "at most 4 arguments (see --help), got $#"

# The repository root, also when this script is run through the root-level symlink.
script_dir="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
repo_root="$(dirname "$script_dir")"

VLLM_URL="${1:-${VLLM_URL:-http://localhost}}"
VLLM_PORT="${2:-${VLLM_PORT:-8003}}"
API_PORT="${3:-${API_PORT:-8001}}"
API_HOST="${4:-${API_HOST:-0.0.0.0}}"
MODEL_NAME="${MODEL_NAME:-ChatDOC/OCRFlux-3B}"
SKIP_CROSS_PAGE_MERGE="${SKIP_CROSS_PAGE_MERGE:-false}"
MAX_PAGE_RETRIES="${MAX_PAGE_RETRIES:-1}"
health_timeout="${VLLM_HEALTH_TIMEOUT:-5}"

is_positive() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }
is_port() { is_positive "$1" && [ "$1" -le 65535 ]; }
is_port "$VLLM_PORT" || die "vllm_port must be a number from 1 to 65535, not '$VLLM_PORT'"
is_port "$API_PORT" || die "api_port must be a number from 1 to 65535, not '$API_PORT'"
is_positive "$MAX_PAGE_RETRIES" ||
  die "MAX_PAGE_RETRIES must be a positive integer, not '$MAX_PAGE_RETRIES'"

# {entry}:{port} for each comma-separated VLLM_URL entry, as the API itself reads them: an entry
# with its own port keeps it, one without a scheme gets http://, a trailing / or /v1 is dropped.
health_urls() {
  local entry
  local -a entries
  IFS=',' read -r -a entries <<<"$VLLM_URL"
  for entry in "${entries[@]}"; do
    entry="${entry// /}"
    entry="${entry%/}"
    entry="${entry%/v1}"
    [ -n "$entry" ] || continue
    [[ "$entry" == *://* ]] || entry="http://$entry"
    if [[ "$entry" =~ ^[a-zA-Z]+://(\[[^]]*\]|[^/:]*):[0-9]+$ ]]; then
      echo "$entry/health"
    else
      echo "$entry:$VLLM_PORT/health"
    fi
  done
}

if command -v curl >/dev/null 2>&1; then
  while read -r url; do
    if curl -fsS -o /dev/null --max-time "$health_timeout" "$url" 2>/dev/null; then
      echo "start_document_api_remote.sh: vLLM is up at $url" >&2
    else
      echo "start_document_api_remote.sh: WARNING: vLLM does not answer at $url;" \
        "starting the API anyway (conversions fail until vLLM is up)" >&2
    fi
  done < <(health_urls)
else
  echo "start_document_api_remote.sh: WARNING: curl not found, vLLM health check skipped" \
    "($(health_urls | paste -sd ' '))" >&2
fi

export VLLM_URL VLLM_PORT API_PORT API_HOST MODEL_NAME SKIP_CROSS_PAGE_MERGE MAX_PAGE_RETRIES

python="${OCRFLUX_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo_root/.venv/bin/python" ]; then
    python="$repo_root/.venv/bin/python"
  else
    python="python3"
    # Not installed into a virtualenv: let the checkout itself be importable.
    export PYTHONPATH="$repo_root${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi

echo "start_document_api_remote.sh: API on http://$API_HOST:$API_PORT" \
  "(vLLM $VLLM_URL, port $VLLM_PORT, model $MODEL_NAME, mode ${OCRFLUX_MODE:-direct})" >&2
exec "$python" -m ocrflux.document_api_server_remote
