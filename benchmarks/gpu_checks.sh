#!/usr/bin/env bash
# Every GPU check of the project in one run, for a machine lent for a few minutes.
#
#   bash benchmarks/gpu_checks.sh OUTDIR [CHECK ...]     (CHECK: tissue engine regulon binning
#                                                         workflow; default all, in that order)
#
# Run from the project root on a machine with a CUDA GPU, with the package importable
# (PYTHONPATH=workflow/scripts) and Snakemake on PATH. Each check has its own time limit and
# log; a failed or timed-out check does not stop the others. Writes OUTDIR/steps.txt (one
# line per check: exit status, seconds), OUTDIR/gpu_checks.tar.gz (every log and JSON) and
# OUTDIR/summary.txt (the lines the notes quote).
#
# 1. tissue training throughput at 51,089 regions, 880 samples, data resident on the GPU:
#    bf16 autocast (the engine's auto) and fp32, with the peak GPU memory of each model;
# 2. the training engine against a bare PyTorch loop on the GPU;
# 3. regulon model training windows per second;
# 4. binning: the contrastive encoder on the demo genomes x 20 copies, GPU and the same
#    machine's CPU (16 threads) in the same run;
# 5. the whole workflow on config/test.yaml with `device: auto` (CUDA rules on the GPU),
#    then its snapshot compared with the one the tests hold (made on a CPU).
set -u
out=${1:?usage: gpu_checks.sh OUTDIR [CHECK ...]}
shift
checks=" ${*:-tissue engine regulon binning workflow} "
want() { [[ $checks == *" $1 "* ]]; }
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1

step() {
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" >"$work/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$out/steps.txt"
    tail -n 12 "$work/$name.log"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
    nproc
} >"$work/machine.txt" 2>&1
cat "$work/machine.txt"

if want tissue; then
    step tissue_bf16 170 python3 benchmarks/bench_tissue_throughput.py --device cuda --samples 880 \
        --epochs 3 --threads 8 --precision auto --out "$work/tissue_throughput_cuda_bf16.json"
    step tissue_fp32 120 python3 benchmarks/bench_tissue_throughput.py --device cuda --samples 880 \
        --epochs 3 --threads 8 --precision fp32 --kinds mlp attention \
        --out "$work/tissue_throughput_cuda_fp32.json"
fi
if want engine; then
    step engine 60 python3 benchmarks/bench_engine.py --device cuda --n 200000 --epochs 3
fi
if want regulon; then
    step regulon 60 python3 benchmarks/bench_regulon.py --n-bp 400000
    cp benchmarks/results/bench_regulon.json "$work/regulon_cuda.json" 2>/dev/null
fi
if want binning; then
    # 20 training epochs instead of the schema's 50 on both devices: the figure is per epoch.
    step binning_cuda 150 python3 benchmarks/bench_binning_contrastive.py --genomes none --seeds 1 \
        --copies 20 --device cuda --threads 8 --train '{"max_epochs": 20}' \
        --out "$work/binning_contrastive_cuda.json"
    step binning_cpu16 150 python3 benchmarks/bench_binning_contrastive.py --genomes none --seeds 1 \
        --copies 20 --device cpu --threads 16 --train '{"max_epochs": 20}' \
        --out "$work/binning_contrastive_cpu16.json"
fi
if want workflow; then
    rm -rf results/test logs/test
    step workflow 240 snakemake --cores 16 --resources gpu=1 --configfile config/test.yaml
    step snapshot 60 python3 -c 'import sys; from genomelab.cli import main; sys.exit(main())' \
        snapshot results/test --check tests/data/snapshot_test_config.json
    python3 -c 'import sys; from genomelab.cli import main; sys.exit(main())' \
        snapshot results/test --out "$work/snapshot_gpu.json" >/dev/null 2>&1
    # Which device each training rule used, from its log.
    grep -rh -i "cuda\|device" logs/test 2>/dev/null | sort | uniq -c | sort -rn | head -40 \
        >"$work/workflow_devices.txt"
fi

{
    cat "$work/machine.txt"
    cat "$out/steps.txt"
    for f in "$work"/*.log; do
        echo "--- $(basename "$f")"
        tail -n 25 "$f"
    done
    cat "$work/workflow_devices.txt" 2>/dev/null
} >"$out/summary.txt"
tar -czf "$out/gpu_checks.tar.gz" -C "$work" .
