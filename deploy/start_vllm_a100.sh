#!/usr/bin/env bash
# Serve OCRFlux-3B with vLLM's OpenAI-compatible server on a GPU host (the deployment guide's
# script, with flags that current vLLM accepts and defaults that keep the GPU busy).
#
#   ./start_vllm_a100.sh [model_path] [port] [extra vllm serve flags...]
#
# Run `./start_vllm_a100.sh --help` for the environment overrides.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./start_vllm_a100.sh [model_path] [port] [extra vllm serve flags...]

Serve OCRFlux-3B with vLLM's OpenAI-compatible server (`vllm serve`).

Arguments:
  model_path   Hugging Face model id or local folder    (default: ChatDOC/OCRFlux-3B)
  port         port of the OpenAI-compatible server    (default: 8003)
  extra flags  passed to `vllm serve` unchanged, after the flags below

Environment overrides (unset or empty: the default):
  MODEL_NAME               name the model is served as; the API and the workers send it
                           (default: ChatDOC/OCRFlux-3B, also for a local model_path)
  VLLM_HOST                address to listen on                       (default: 0.0.0.0)
  MAX_MODEL_LEN            context length, --max-model-len            (default: 32768)
  GPU_MEMORY_UTILIZATION   share of GPU memory vLLM may use           (default: 0.95)
  MAX_NUM_SEQS             sequences decoded at once, --max-num-seqs  (default: 256)
  MAX_NUM_BATCHED_TOKENS   tokens per scheduler step                  (default: 16384)
  LIMIT_MM_PER_PROMPT      --limit-mm-per-prompt (JSON)     (default: {"image": 1, "video": 0})
  TENSOR_PARALLEL_SIZE     GPUs to shard the model over   (passed only when set)
  DTYPE                    auto | bfloat16 | float16 | ... (passed only when set)
  QUANTIZATION             e.g. fp8, awq                   (passed only when set)
  ENABLE_PREFIX_CACHING    true | false                    (passed only when set; vLLM's own
                           default is on)
  VLLM_BIN                 the vllm executable             (default: `vllm` on PATH, else
                           .venv/bin/vllm of this checkout)

vLLM is not a dependency of the package: install it on the GPU host with
  pip install '.[vllm]'
EOF
}

die() {
  echo "start_vllm_a100.sh: error: $*" >&2
  exit 2
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
esac

# The repository root, also when this script is run through the root-level symlink.
script_dir="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
repo_root="$(dirname "$script_dir")"

model_path="${1:-ChatDOC/OCRFlux-3B}"
port="${2:-8003}"
if [ $# -gt 2 ]; then
  shift 2
  extra_args=("$@")
else
  extra_args=()
fi

model_name="${MODEL_NAME:-ChatDOC/OCRFlux-3B}"
host="${VLLM_HOST:-0.0.0.0}"
max_model_len="${MAX_MODEL_LEN:-32768}"
gpu_memory_utilization="${GPU_MEMORY_UTILIZATION:-0.95}"
# A 3B model leaves most of an A100's memory to the KV cache: hundreds of page sequences fit.
# (The community script capped this at 10, which leaves the GPU idle between pages.)
max_num_seqs="${MAX_NUM_SEQS:-256}"
# A page image is about 1,000 prompt tokens: 16384 lets a step prefill a dozen pages next to
# the running decodes (vLLM recommends more than 8192 for small models on large GPUs).
max_num_batched_tokens="${MAX_NUM_BATCHED_TOKENS:-16384}"
# Every request carries exactly one image (protocol section 4); no video is ever sent, so vLLM
# need not reserve memory for one.
default_limit_mm='{"image": 1, "video": 0}'
limit_mm_per_prompt="${LIMIT_MM_PER_PROMPT:-$default_limit_mm}"

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_positive() { is_uint "$1" && [ "$1" -gt 0 ]; }
is_port() { is_positive "$1" && [ "$1" -le 65535 ]; }

is_port "$port" || die "port must be a number from 1 to 65535, not '$port'"
is_positive "$max_model_len" ||
  die "MAX_MODEL_LEN must be a positive integer, not '$max_model_len'"
is_positive "$max_num_seqs" ||
  die "MAX_NUM_SEQS must be a positive integer, not '$max_num_seqs'"
is_positive "$max_num_batched_tokens" ||
  die "MAX_NUM_BATCHED_TOKENS must be a positive integer, not '$max_num_batched_tokens'"
[[ "$gpu_memory_utilization" =~ ^(0?\.[0-9]*[1-9][0-9]*|1(\.0*)?)$ ]] ||
  die "GPU_MEMORY_UTILIZATION must be a fraction in (0, 1], not '$gpu_memory_utilization'"

args=(
  serve "$model_path"
  --host "$host"
  --port "$port"
  --served-model-name "$model_name"
  --max-model-len "$max_model_len"
  --gpu-memory-utilization "$gpu_memory_utilization"
  --max-num-seqs "$max_num_seqs"
  --max-num-batched-tokens "$max_num_batched_tokens"
  --limit-mm-per-prompt "$limit_mm_per_prompt"
)

if [ -n "${TENSOR_PARALLEL_SIZE:-}" ]; then
  is_positive "$TENSOR_PARALLEL_SIZE" ||
    die "TENSOR_PARALLEL_SIZE must be a positive integer, not '$TENSOR_PARALLEL_SIZE'"
  args+=(--tensor-parallel-size "$TENSOR_PARALLEL_SIZE")
fi
if [ -n "${DTYPE:-}" ]; then
  args+=(--dtype "$DTYPE")
fi
if [ -n "${QUANTIZATION:-}" ]; then
  args+=(--quantization "$QUANTIZATION")
fi
if [ -n "${ENABLE_PREFIX_CACHING:-}" ]; then
  case "${ENABLE_PREFIX_CACHING,,}" in
    1 | true | yes | on) args+=(--enable-prefix-caching) ;;
    0 | false | no | off) args+=(--no-enable-prefix-caching) ;;
    *) die "ENABLE_PREFIX_CACHING must be true or false, not '$ENABLE_PREFIX_CACHING'" ;;
  esac
fi
args+=("${extra_args[@]}")

# Which vllm to run: VLLM_BIN, else `vllm` on PATH, else this checkout's virtualenv.
find_vllm() {
  if [ -n "${VLLM_BIN:-}" ]; then
    command -v "$VLLM_BIN"
  elif command -v vllm; then
    return 0
  elif [ -x "$repo_root/.venv/bin/vllm" ]; then
    echo "$repo_root/.venv/bin/vllm"
  else
    return 1
  fi
}
if ! vllm_bin="$(find_vllm 2>/dev/null)"; then
  where="no \`vllm\` on PATH or in .venv/bin"
  [ -z "${VLLM_BIN:-}" ] || where="VLLM_BIN=$VLLM_BIN is not executable"
  cat >&2 <<EOF
start_vllm_a100.sh: error: vLLM is not installed ($where).
Install it on this GPU host, from the repository root:
    pip install '.[vllm]'
or point VLLM_BIN at an existing vllm executable.
EOF
  exit 127
fi

printf 'start_vllm_a100.sh: exec %q' "$vllm_bin" >&2
printf ' %q' "${args[@]}" >&2
printf '\n' >&2
exec "$vllm_bin" "${args[@]}"
