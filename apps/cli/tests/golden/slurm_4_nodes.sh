#!/bin/bash
# automodel finetune toy (finetune.toy) on 4 node(s)
#SBATCH --job-name=llama-sft
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --output=/lustre/jobs/llama-sft/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --requeue
#SBATCH --mem=0
#SBATCH --time=04:00:00
#SBATCH --account=research
#SBATCH --partition=batch
#SBATCH --qos=high
#SBATCH --constraint=h100
#SBATCH --exclusive
#SBATCH --mail-type=END
set -uo pipefail
cd /work/project
export NCCL_DEBUG=WARN
module load cuda/12.8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
head_addr=$(scontrol show node "$head_node" | sed -n "s/.*NodeAddr=\([^ ]*\).*/\1/p")
head_addr=${head_addr:-$head_node}
echo "automodel: job $SLURM_JOB_ID start ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST, rendezvous $head_addr"
preempted=0
forward_usr1() { preempted=1; echo "automodel: USR1: saving at the next step"; kill -USR1 "$srun_pid"; }
trap forward_usr1 USR1
srun --kill-on-bad-exit=1 --nodes=4 --ntasks-per-node=1 --container-image=nvcr.io/nvidia/pytorch:25.01-py3 --container-mounts=/lustre/data:/data,/lustre/ckpt:/ckpt python -m automodel.cli.torchrun --nnodes=4 --nproc-per-node=8 --rdzv-backend=c10d "--rdzv-id=$SLURM_JOB_ID" "--rdzv-endpoint=$head_addr:29500" -m automodel.cli.worker finetune.toy -c /lustre/jobs/llama-sft/config.yaml &
srun_pid=$!
while true; do wait "$srun_pid"; status=$?; kill -0 "$srun_pid" 2>/dev/null || break; done
if [ "$preempted" = 1 ] && [ "$status" = 0 ]; then
  echo "automodel: checkpoint saved after USR1; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
exit "$status"
