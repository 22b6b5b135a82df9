#!/usr/bin/env bash
# The GPU measurements of benchmarks/README.md in one run, each under its own time limit, results to $1;
# name steps after it to run only those (a lent GPU's minutes rarely cover them all):
#   bash benchmarks/gpu_suite.sh benchmarks/results/gpu                       # every step
#   bash benchmarks/gpu_suite.sh benchmarks/results/gpu ridge_nsd_full sd_small_gpu
# Run from the project root on a CUDA machine with the packages installed (`uv sync`, or the wheels of
# `uv build --all-packages` beside diffusers, himalaya and nibabel).
set -u
out=${1:?usage: gpu_suite.sh OUTPUT_FOLDER [STEP...]}
shift
chosen=" $* "
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
step() {  # step SECONDS NAME COMMAND...: one benchmark; a failure or overrun is logged and the suite goes on
  local seconds=$1 name=$2
  shift 2
  [ "$chosen" = "  " ] || [[ "$chosen" == *" $name "* ]] || return 0
  echo "== $name (at most ${seconds}s) $(date +%T)"
  timeout "$seconds" "$@" || echo "== $name ended with status $?"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step 200 brain_diffuser_published python3 benchmarks/brain_diffuser_memory.py --device cuda \
  --out "$out/brain_diffuser_memory_published.json"
step 210 ridge_nsd_full python3 benchmarks/ridge_scaling.py --scales nsd-full --backends torch_cuda \
  --sklearn-projected --timeout 100 --out "$out/ridge_scaling_nsd_full.json"
step 100 sd_small_gpu python3 benchmarks/sd_small_gpu.py --device cuda --out "$out/sd_small_gpu.json"
# the main job's smoke test under FSDP2 on this one GPU (one process: sharding over a world of one)
step 60 fsdp_one_gpu python3 -m accelerate.commands.launch --use_fsdp --fsdp_version 2 --num_processes 1 \
  --num_machines 1 --mixed_precision bf16 --dynamo_backend no apps/miyawaki_finetune.py --quick --device cuda \
  --no-progress --n-boot 100 --out "$out/fsdp_one_gpu"
# torch.compile beside PyTorch's defaults: the next lever on the LoRA (150 img/s) and generation (8 img/s)
# targets once cuDNN autotuning and channels-last gave nothing (2026-11-30); its warm-up compiles for minutes
step 420 sd_lora_speed python3 benchmarks/sd_lora_speed.py --device cuda --steps 12 --warmup 3 \
  --gen-repeats 2 --variants baseline,compiled --out "$out/sd_lora_speed.json"
step 120 ridge_nsd_2k python3 benchmarks/ridge_scaling.py --scales nsd-2k --timeout 90 \
  --out "$out/ridge_scaling_nsd_2k.json"
step 40 diffusion_speed python3 benchmarks/diffusion_speed.py --device cuda --out "$out/diffusion_speed.json"
# the small models are bound by host dispatch (digit69_ldm's 120 s target): CUDA-graph replay against inductor
step 240 small_unet_compiled python3 benchmarks/diffusion_speed.py --device cuda --kinds ldm \
  --compiled cudagraphs,inductor --out "$out/diffusion_speed_compiled.json"
# issue 15's whole-run target (<= 120 s) under the app's defaults (since 2026-12-05 two thirds of the steps at
# batch 48; the 131 s on record ran all steps at 32); needs FMRI_DATA_DIR (the digit69 file); the next
# header's clock ends it
step 200 digit69_ldm python3 apps/digit69_ldm.py --device cuda --no-progress --out "$out/digit69_ldm" \
  --work-dir "${TMPDIR:-/tmp}/digit69_ldm-work"
# the same with ldm's UNet and autoencoder compiled (inductor; a fresh machine's compile cache is cold)
step 240 digit69_ldm_compiled python3 apps/digit69_ldm.py --device cuda --no-progress --compile \
  --out "$out/digit69_ldm_compiled" --work-dir "${TMPDIR:-/tmp}/digit69_ldm-compiled-work"
echo "== done $(date +%T)"
