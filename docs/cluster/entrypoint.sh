#!/bin/bash
# A container's entry point for distributed training: torchrun on this pod, c10d rendezvous with the others.
# Made for Kubeflow's PyTorchJob (docs/cluster/pytorchjob.yaml), which sets MASTER_ADDR and PET_NNODES in
# every pod; works in any pod (or a plain indexed Job) that sets them.
#
# On eviction or preemption Kubernetes sends SIGTERM to this process (PID 1) and waits
# terminationGracePeriodSeconds before killing the pod; the script passes SIGTERM to torchrun, which passes it
# to every rank: all ranks stop at the same iteration and rank 0 writes the checkpoint. Exit status: 0 the
# run finished; 143 stopped by SIGTERM with its checkpoint written (restartPolicy: ExitCode retries it, and the
# same command resumes the run bit-exactly); anything else: a failure (not retried).
set -u
RECIPE=${RECIPE:-imagenet/resnet50}
OUT=${OUT:-/runs/resnet50}                 # a volume mounted at least on the pod of node 0
PROCS_PER_NODE=${PET_NPROC_PER_NODE:-${PROCS_PER_NODE:-1}}
NNODES=${PET_NNODES:-1}
RDZV_PORT=${RDZV_PORT:-29400}

stopping=0
launcher=
forward() {
    stopping=1
    [ -n "$launcher" ] && kill -TERM "$launcher" 2>/dev/null
}
trap forward TERM INT

python -m torch.distributed.run --nnodes="$NNODES" --nproc_per_node="$PROCS_PER_NODE" \
    --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$RDZV_PORT" --rdzv_id="${JOB_NAME:-resnet}" \
    --rdzv_conf=join_timeout=900 \
    -m resnet train "$RECIPE" --out "$OUT" "$@" &
launcher=$!
# A trapped signal ends `wait` early (the launcher still runs): wait again until it has finished.
while :; do
    wait "$launcher"
    status=$?
    kill -0 "$launcher" 2>/dev/null || break
done
if [ "$stopping" = 1 ]; then
    echo "entrypoint: stopped by SIGTERM (torchrun status $status); the same command resumes the run" >&2
    exit 143
fi
exit "$status"
