#!/bin/bash
# automodel finetune toy (finetune.toy) on 1 node(s)
#SBATCH --job-name=finetune-toy
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=/jobs/toy-1/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --time=00:30:00
#SBATCH --partition=debug
set -uo pipefail
cd /work/project
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
head_addr=$(scontrol show node "$head_node" | sed -n "s/.*NodeAddr=\([^ ]*\).*/\1/p")
head_addr=${head_addr:-$head_node}
echo "automodel: job $SLURM_JOB_ID start ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST, rendezvous $head_addr"
preempted=0
forward_usr1() { preempted=1; echo "automodel: USR1: saving at the next step"; kill -USR1 "$srun_pid"; }
trap forward_usr1 USR1
srun --kill-on-bad-exit=1 --nodes=1 --ntasks-per-node=1 python3 -m automodel.cli.torchrun --nnodes=1 --nproc-per-node=1 --rdzv-backend=c10d "--rdzv-id=$SLURM_JOB_ID" "--rdzv-endpoint=$head_addr:29500" -m automodel.cli.worker finetune.toy -c /jobs/toy-1/config.yaml &
srun_pid=$!
while true; do wait "$srun_pid"; status=$?; kill -0 "$srun_pid" 2>/dev/null || break; done
if [ "$preempted" = 1 ] && [ "$status" = 0 ]; then
  echo "automodel: checkpoint saved after USR1; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
exit "$status"
