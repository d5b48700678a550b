#!/usr/bin/env bash
# Run a grid on a Ray cluster started inside one SLURM allocation: the first node is the head, every node gives its
# GPUs to Ray, and the driver submits one task per configuration. Results go to a folder on the shared file system.
#   sbatch --nodes=4 --gpus-per-node=4 --cpus-per-task=32 --time=24:00:00 book/ray/slurm.sh table3
#SBATCH --job-name=lolip-grid
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail
preset=${1:-table2}
cd "${SLURM_SUBMIT_DIR:-$PWD}"
source .venv/bin/activate
nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head=${nodes[0]}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address | awk '{print $1}')
port=6379
srun --nodes=1 --ntasks=1 -w "$head" ray start --head --node-ip-address="$head_ip" --port=$port \
     --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="${SLURM_GPUS_PER_NODE:-0}" --block &
sleep 30
for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" ray start --address="$head_ip:$port" \
       --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus="${SLURM_GPUS_PER_NODE:-0}" --block &
done
sleep 30
lolip grid "$preset" --backend ray --address "$head_ip:$port" --root "${LOLIP_RESULTS:-results}"
