#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, as parts run in the order named:
#
#     OUT=out tools/gpu_session.sh ops cifar kernel tests   # 3.5 minutes on an H200 (2026-11-28)
#     OUT=out tools/gpu_session.sh projectedgan             # at most 5.5 minutes (2 runs of 150 s, and the data)
#     OUT=out tools/gpu_session.sh paper256                 # at most 7 minutes (2 runs of 200 s, and the data)
#     OUT=out tools/gpu_session.sh evidence                 # EVIDENCE_SECONDS (450) and ~40 s of set-up
#
#   ops           stylegan2-ada's custom CUDA ops build and load, with no fallback warning?
#   cifar         `diffaug-noise bench upstream`, stylegan2 at 32 px (--cfg cifar --batch 64), 12 kimg a run
#   projectedgan  the same for projectedgan, FastGAN at 256 px (random backbone: no network there), 150 s a run
#   paper256      the same for stylegan2 at 256 px (--cfg paper256 --batch 64), 200 s a run
#   kernel        `diffaug-noise bench --device cuda` at the two shapes of its speed goals
#   tests         the gpu-marked tests
#   evidence      tools/gpu_evidence.py: the conv digits study at 32 px and upstream StyleGAN3 on the digits, four
#                 arms, at once for EVIDENCE_SECONDS (default 450); its results land in $OUT/evidence.tar.gz
#
# Run it on the GPU machine from the repository root, with unmodified upstream checkouts in the
# ignored folder .upstream/ (their files, e.g. `git -C ~/stylegan2-ada-pytorch archive HEAD | tar -x
# -C .upstream/stylegan2-ada-pytorch`; likewise projected-gan) and wheels of what that machine lacks
# in the ignored folder .whl/ (projected-gan imports dill; setuptools >= 77 where the machine's is
# older). The data are procedural images made there (speed does not depend on what they show).
# Everything lands in $OUT: session.log, gpu.txt, tests.txt, bench.json and upstream-*.json. Each
# step has its own time limit, so one that hangs costs its limit, not the lease.
#
# DEVICE=cpu runs ops, cifar and kernel on a CPU against the stylegan2 stand-in of the tests
# (upstream at 32 px takes ~40 minutes a kimg on two cores), and evidence at its small sizes: a check
# of the script, not a measurement; the other parts are for GPUs only.
set -uo pipefail
[ $# -gt 0 ] || { echo "name the parts: ops cifar projectedgan paper256 kernel tests evidence"; exit 2; }
OUT=${OUT:-gpu-session}
DEVICE=${DEVICE:-cuda}
UP=${UPSTREAM_DIR:-.upstream}
SG=$UP/stylegan2-ada-pytorch
[ "$DEVICE" = cuda ] || SG=tests/standins/stylegan2_ada
DATA=/tmp/gpu-session-data
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }

# Wheels of setuptools (the build needs >= 77) go where only the build sees them; the rest on the path.
if ls .whl/*.whl >/dev/null 2>&1; then
    for wheel in .whl/*.whl; do
        case $(basename "$wheel") in setuptools-*) site=/tmp/gpu-session-build ;; *) site=/tmp/gpu-session-site ;; esac
        python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$wheel" || exit 1
    done
    export PYTHONPATH=/tmp/gpu-session-site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! command -v diffaug-noise >/dev/null; then  # not `import diffaug_noise`: the checkout's core folder imports
    PYTHONPATH=/tmp/gpu-session-build:${PYTHONPATH:-} \
        python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
fi
{
    date -u +%Y-%m-%dT%H:%MZ
    python3 -c "import torch, triton; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| triton', triton.__version__)"
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; fi
} | tee "$OUT/gpu.txt"

if [ "$DEVICE" = cuda ]; then  # ticks are 4 kimg: 12 kimg gives three after the warm-up tick
    REPEATS=200 CIFAR=(--cfg cifar --batch 64 --kimg 12 --metrics none --snap 1000)
else  # the stand-in's flags
    REPEATS=5 CIFAR=(--batch 4 --kimg 0.032)
fi

procedural_zip() {  # side, count: smooth colour gradients with a random tilt, as upstream's zip
    python3 - "$DATA" "$1" "$2" <<'EOF'
import pathlib, sys, tempfile
import numpy as np, PIL.Image
from diffaug_noise.data import prepare

root, side, count = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = root / f"procedural-{side}.zip"
if not out.exists():
    src = pathlib.Path(tempfile.mkdtemp()) / "src"
    src.mkdir()
    rng, grid = np.random.default_rng(side), np.linspace(0, 1, side)
    for i in range(count):
        a, b, c = rng.uniform(-1, 1, 3)
        image = np.stack([np.outer(grid, np.ones(side)) * a + np.outer(np.ones(side), grid) * b + c * k
                          for k in (0.2, 0.5, 0.8)], axis=-1)
        image = (255 * (image - image.min()) / (np.ptp(image) + 1e-9)).astype(np.uint8)
        PIL.Image.fromarray(image).save(src / f"{i:05d}.png")
    prepare(f"procedural{side}", src, out=out, resolution=side)
print(out)
EOF
}

bench_upstream() {  # name, adapter, repo, data zip, limit (s) of the pair, then bench options, --, upstream args
    local name=$1 adapter=$2 repo=$3 data=$4 limit=$5
    shift 5
    step "bench upstream: $name"
    if [ ! -d "$repo" ]; then echo "skipped: no checkout at $repo"; return; fi
    timeout "$limit" diffaug-noise bench upstream "$adapter" --repo "$repo" --data "$data" \
        --outdir "/tmp/gpu-session-runs/$name" --json "$OUT/upstream-$name.json" "$@"
}

for part in "$@"; do
    if [ "$DEVICE" != cuda ] && [[ " projectedgan paper256 tests " == *" $part "* ]]; then
        echo "$part is for a GPU"; continue
    fi
    case $part in
    ops)
        step "stylegan2-ada's custom ops: built and loaded, with no fallback warning?"
        timeout 200 python3 - "$SG" "$DEVICE" <<'EOF'
import sys, warnings
import torch
from diffaug_noise.integrations import stylegan2_ada

repo, device = sys.argv[1:]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with stylegan2_ada.ADAPTER.patched(repo, shims=True):
        from torch_utils.ops import bias_act, upfirdn2d  # the adapter's shims are on inside this block
        if device == "cuda":
            x = torch.randn(8, 16, 32, 32, device="cuda")
            bias_act.bias_act(x, torch.zeros(16, device="cuda"), act="lrelu")
            upfirdn2d.upsample2d(x, upfirdn2d.setup_filter([1, 3, 3, 1], device=x.device))
        print("bias_act plugin:", bias_act._plugin is not None, "| upfirdn2d plugin:", upfirdn2d._plugin is not None)
print("warnings:", [str(w.message)[:200] for w in caught] or "none")
EOF
        ;;
    cifar)
        step "Procedural data, 32 px"
        procedural_zip 32 2000
        bench_upstream cifar stylegan2 "$SG" "$DATA/procedural-32.zip" 240 -- "${CIFAR[@]}" ;;
    projectedgan)
        step "Procedural data, 256 px"
        procedural_zip 256 500
        # Each run stops at its limit (its --kimg is out of reach), measured on the 1-kimg ticks it logged.
        bench_upstream projectedgan projectedgan "$UP/projected-gan" "$DATA/procedural-256.zip" 320 \
            --seconds-per-run 150 --no-pretrained \
            -- --cfg fastgan --batch 64 --kimg 1000 --tick 1 --metrics none --snap 1000 ;;
    paper256)  # stylegan2-ada's ticks are 4 kimg (it has no --tick); in a fresh lease the first run builds the custom ops
        step "Procedural data, 256 px"
        procedural_zip 256 500
        bench_upstream paper256 stylegan2 "$SG" "$DATA/procedural-256.zip" 420 \
            --seconds-per-run 200 -- --cfg paper256 --batch 64 --kimg 1000 --metrics none --snap 1000 ;;
    kernel)
        step "Noise forward; goals: ours/randn <= 2.0 at 64x3x32x32, ours/copy <= 1.3 at 256x3x256x256"
        timeout 90 diffaug-noise bench --device "$DEVICE" --no-d-step --repeats "$REPEATS" \
            --shapes 64x3x32x32,256x3x256x256 --json "$OUT/bench.json" ;;
    evidence)
        step "Evidence: the conv digits study and StyleGAN3 on the digits, at once"
        seconds=${EVIDENCE_SECONDS:-450}
        small=(); [ "$DEVICE" = cuda ] || small=(--small --workers 1)
        rm -rf /tmp/gpu-evidence
        timeout $((seconds + 60)) python3 tools/gpu_evidence.py --out /tmp/gpu-evidence --device "$DEVICE" \
            --seconds "$seconds" --stylegan3 "$UP/stylegan3" "${small[@]}"
        echo "exit $?"
        cp /tmp/gpu-evidence/*.md "$OUT"/ 2>/dev/null
        tar -czf "$OUT/evidence.tar.gz" -C /tmp/gpu-evidence . ;;
    tests)
        step "GPU tests"
        timeout 180 python3 -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests 2>&1 \
            | tee "$OUT/tests.txt" | tail -30 ;;
    *)
        echo "unknown part $part: ops cifar projectedgan paper256 kernel tests evidence"; exit 2 ;;
    esac
done
step "done"
