#!/usr/bin/env bash
# rewardlab's GPU benchmark in one command (see bench/gpu/README.md). From the repository root:
#   bash bench/gpu/run.sh --out DIR           # one GPU, ~7 minutes; results.json + results.md in DIR
#   bash bench/gpu/run.sh --dry --out DIR     # the same code on a CPU at tiny sizes, about a minute
# Offline: Python packages the machine lacks come as wheels in .whl/ (bench/gpu/fetch_wheels.sh downloads them).
set -u
cd "$(dirname "$0")/../.."

out=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--out" ] && out="${args[$((i + 1))]:-}"
done
if [ -z "$out" ]; then
  out="./gpu-results"
  args+=(--out "$out")
fi
mkdir -p "$out"

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    2>&1 | tail -3
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
# The repository's own code without installing it (no network for build dependencies).
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore

command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
python3 - <<'PY'
import importlib.metadata as md, platform
names = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "pydantic", "fastapi", "uvicorn")
def version(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return "-"
print("python", platform.python_version(), " ".join(f"{n}={version(n)}" for n in names))
import rewardlab.recipes.train  # noqa: F401  fails here, not mid-run, if a core dependency is missing
print("rewardlab imports")
PY

# The Python side stops parts at its own budget (390 s); this outer limit only catches a hang.
timeout -k 10 420 python3 bench/gpu/gpu_bench.py "${args[@]}" 2>&1 | tee "$out/console.log" | tail -c 9000
status=${PIPESTATUS[0]}
echo "exit $status; results in $out: $(ls "$out" | tr '\n' ' ')"
exit "$status"
