#!/usr/bin/env bash
# The gpu tier (`pytest -m gpu tests/gpu`) and bench/gpu.py on this machine's NVIDIA GPU, in one go.
#
#   bash tests/gpu/run.sh
#       Makes a venv with --system-site-packages (the machine's PyTorch and CUDA are used), installs
#       the project from this checkout without any package index (only what the machine has, plus
#       the wheels in $GPUFABRIC_WHEELS), runs the tier and the bench, and writes everything to
#       $OUT/gpu-results.txt (./gpu-results/ when OUT is unset), with the fabrics' logs beside it.
#       Exit status: 0 when everything passed (or, without an NVIDIA GPU, skipped), else 1.
#       Takes about 3-5 minutes on an H100/H200 machine; each step has a time limit, 8 minutes in all.
#
#   bash tests/gpu/run.sh --download-wheels DIR
#       On a machine that reaches PyPI: fetches the wheels the project needs for CPython 3.12 on
#       x86_64 Linux into DIR, to carry to a GPU machine that has no network (GPUFABRIC_WHEELS=DIR).
#
# Environment: GPUFABRIC_WHEELS (a folder of wheels), GPUFABRIC_PYTHON (the interpreter; default
# python3.12, else python3), GPUFABRIC_GPU_VENV (where to make the venv; default a temporary one),
# GPUFABRIC_GPU_ALWAYS=1 (make the venv and install even without a GPU, to check this script).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -n "${GPUFABRIC_WHEELS:-}" ]]; then  # relative to where we were started
    GPUFABRIC_WHEELS="$(cd "$GPUFABRIC_WHEELS" 2>/dev/null && pwd)" || { echo "GPUFABRIC_WHEELS is not a folder"; exit 1; }
fi
cd "$ROOT" || exit 1

# Beyond the project's own dependencies: what the tier and the bench import.
TOOLS=(pytest pytest-timeout numpy)
OPTIONAL=(nvidia-ml-py)  # NVML discovery; nvidia-smi is used without it

requirements() {  # the project's dependencies (from pyproject.toml), then TOOLS
    python3 - "$ROOT/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
for line in block.splitlines():
    m = re.match(r'\s*"([^"]+)"', line)
    if m:
        print(m.group(1))
EOF
    printf '%s\n' "${TOOLS[@]}"
}

if [[ "${1:-}" == "--download-wheels" ]]; then
    dest="${2:?usage: bash tests/gpu/run.sh --download-wheels DIR}"
    mkdir -p "$dest"
    mapfile -t reqs < <(requirements)
    python3 -m pip download --dest "$dest" --only-binary=:all: --implementation cp --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        "${reqs[@]}" "${OPTIONAL[@]}" "setuptools>=68" wheel || exit 1
    echo "wheels in $dest ($(du -sh "$dest" | cut -f1)); on the GPU machine: GPUFABRIC_WHEELS=$dest bash tests/gpu/run.sh"
    exit 0
fi

RESULTS_DIR="${OUT:-$ROOT/gpu-results}"
mkdir -p "$RESULTS_DIR" || exit 1
RESULTS="$RESULTS_DIR/gpu-results.txt"
WORK="$(mktemp -d -t gpufabric-gpu-run-XXXXXX)"
STARTED=$(date +%s)

step() { printf '\n==== %s (%ss in)\n' "$*" "$(( $(date +%s) - STARTED ))"; }

machine_report() {
    step "machine"
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    uname -srm
    echo "CPUs: $(nproc), memory: $(free -g 2>/dev/null | awk '/^Mem:/{print $2 " GiB"}')"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi 2>&1 | head -20
        nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid --format=csv 2>&1
    else
        echo "nvidia-smi: not found"
    fi
    for tool in criu cuda-checkpoint; do
        echo "$tool: $(command -v "$tool" || echo 'not found')"
    done
}

have_gpu() {
    command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

pick_python() {  # the first that runs: $GPUFABRIC_PYTHON, python3.12, python3
    local candidate
    for candidate in "${GPUFABRIC_PYTHON:-}" python3.12 python3; do
        if [[ -n "$candidate" ]] && "$candidate" -c 'import sys' >/dev/null 2>&1; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

# Which requirements neither the venv (system site-packages included) nor $GPUFABRIC_WHEELS has.
missing_requirements() {
    local py="$1"; shift
    "$py" - "${GPUFABRIC_WHEELS:-}" "$@" <<'EOF'
import os, re, sys
from importlib import metadata
wheels_dir, reqs = sys.argv[1], sys.argv[2:]
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()
wheels = set()
if wheels_dir and os.path.isdir(wheels_dir):
    for f in os.listdir(wheels_dir):
        if f.endswith((".whl", ".tar.gz", ".zip")):
            wheels.add(norm(re.split(r"-\d", f, 1)[0]))
for line in reqs:
    name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0)
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    ok = have is not None
    if ok and Requirement is not None:
        ok = Requirement(line).specifier.contains(have, prereleases=True)
    if not ok and norm(name) not in wheels:
        print(f"{line} (installed: {have or 'none'})")
EOF
}

run_tier_and_bench() {  # $1: the interpreter with the project installed
    local py="$1" rc_tests rc_bench
    step "gpu tier: pytest -m gpu tests/gpu"
    timeout 200 "$py" -m pytest -m gpu tests/gpu -v -rA -s -p no:cacheprovider --basetemp="$WORK/pytest" \
        --junitxml="$RESULTS_DIR/gpu-tier.xml"
    rc_tests=$?
    [[ $rc_tests -eq 124 ]] && echo "the gpu tier ran over its 200 s"
    local skipped
    skipped="$("$py" -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); print(sum(int(s.get("skipped", 0)) for s in r.iter("testsuite")))' \
        "$RESULTS_DIR/gpu-tier.xml" 2>/dev/null || echo "?")"
    if have_gpu && [[ "$skipped" != 0 ]]; then  # on a GPU machine a skip means something is missing
        echo "$skipped gpu test(s) skipped on a machine with an NVIDIA GPU: see the reasons above"
        [[ $rc_tests -eq 0 ]] && rc_tests=1
    fi
    step "bench: python bench/gpu.py"
    env -u GPUFABRIC_URL -u GPUFABRIC_TOKEN GPUFABRIC_DATA_DIR="$WORK/bench-fabric" timeout 240 "$py" bench/gpu.py
    rc_bench=$?
    [[ $rc_bench -eq 124 ]] && echo "the bench ran over its 240 s"
    mkdir -p "$RESULTS_DIR/logs"
    while IFS= read -r log; do  # the fabrics' own logs, for whoever reads a failure
        name="$(echo "${log#"$WORK"/}" | tr '/' '_')"
        tail -c 300000 "$log" > "$RESULTS_DIR/logs/$name"
    done < <(find "$WORK" -name '*.log' -type f 2>/dev/null)
    step "summary"
    echo "gpu tier: $([[ $rc_tests -eq 0 ]] && echo passed || echo "FAILED (pytest exit $rc_tests)")"
    echo "bench:    $([[ $rc_bench -eq 0 ]] && echo done || echo "FAILED (exit $rc_bench)")"
    [[ $rc_tests -eq 0 && $rc_bench -eq 0 ]]
}

main() {
    machine_report
    if ! have_gpu && [[ "${GPUFABRIC_GPU_ALWAYS:-}" != 1 ]]; then
        step "no NVIDIA GPU"
        echo "no NVIDIA GPU: nvidia-smi $(command -v nvidia-smi >/dev/null && echo 'lists none' || echo 'is not installed')."
        echo "skipped: making the venv and installing (needs the GPU machine's PyTorch), the gpu tier's tests, bench/gpu.py's figures."
        echo "showing that the tier and the bench skip cleanly here:"
        local py=""
        for candidate in "${GPUFABRIC_PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
            if [[ -n "$candidate" ]] && "$candidate" -c "import gpu_fabric, core_executor, pytest" 2>/dev/null; then
                py="$candidate"; break
            fi
        done
        if [[ -z "$py" ]]; then
            echo "skipped: no interpreter here has the project and pytest installed (make test-unit makes one)."
            return 0
        fi
        step "gpu tier without a GPU (must skip): pytest -m gpu tests/gpu"
        timeout 120 "$py" -m pytest -m gpu tests/gpu -rs -p no:cacheprovider --basetemp="$WORK/pytest" || return 1
        step "bench without a GPU (must skip): python bench/gpu.py"
        timeout 60 "$py" bench/gpu.py || return 1
        step "summary"
        echo "SKIPPED: no NVIDIA GPU on this machine; nothing failed."
        return 0
    fi

    local py venv
    py="$(pick_python)" || { echo "no Python runs here (tried \$GPUFABRIC_PYTHON, python3.12, python3)"; return 1; }
    step "venv: $py -m venv --system-site-packages"
    "$py" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' || { echo "$py is older than Python 3.11"; return 1; }
    venv="${GPUFABRIC_GPU_VENV:-$WORK/venv}"
    "$py" -m venv --system-site-packages "$venv" || return 1
    "$venv/bin/python" --version
    "$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())' \
        || echo "PyTorch is not importable: the GPU tests that need it will skip and the bench will fail"

    step "install the project (no package index${GPUFABRIC_WHEELS:+; wheels from $GPUFABRIC_WHEELS})"
    mapfile -t reqs < <(requirements)
    local missing
    missing="$(missing_requirements "$venv/bin/python" "${reqs[@]}" "setuptools>=68")"
    if [[ -n "$missing" ]]; then
        echo "missing here and not in GPUFABRIC_WHEELS (${GPUFABRIC_WHEELS:-unset}):"
        echo "$missing" | sed 's/^/  /'
        echo "carry them in: on a machine with PyPI, bash tests/gpu/run.sh --download-wheels DIR; then GPUFABRIC_WHEELS=DIR here"
        return 1
    fi
    local find_links=()
    [[ -n "${GPUFABRIC_WHEELS:-}" ]] && find_links=(--find-links "$GPUFABRIC_WHEELS")
    # --no-build-isolation builds with the venv's own setuptools: it must be there first.
    timeout 60 "$venv/bin/python" -m pip install -q --no-index "${find_links[@]}" "setuptools>=68" > "$WORK/pip.log" 2>&1 \
        && timeout 180 "$venv/bin/python" -m pip install -q --no-index "${find_links[@]}" --no-build-isolation -e . "${TOOLS[@]}" \
        >> "$WORK/pip.log" 2>&1
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        cat "$WORK/pip.log"
        grep -o 'No matching distribution found for [^ ]*' "$WORK/pip.log" | sed 's/^/missing: /'
        echo "the install failed (pip exit $rc)"
        return 1
    fi
    timeout 60 "$venv/bin/python" -m pip install -q --no-index "${find_links[@]}" "${OPTIONAL[@]}" > /dev/null 2>&1 \
        || echo "(optional ${OPTIONAL[*]} not available: GPU discovery uses nvidia-smi)"
    "$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(gpu-fabric|torch|numpy|grpcio|protobuf|nvidia-ml-py|pytest) '

    run_tier_and_bench "$venv/bin/python"
}

main "$@" 2>&1 | tee "$RESULTS"
status=${PIPESTATUS[0]}
{
    echo
    echo "exit status $status after $(( $(date +%s) - STARTED ))s; results in $RESULTS"
} | tee -a "$RESULTS"
rm -rf "$WORK"
exit "$status"
