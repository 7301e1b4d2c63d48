# A throw-away one-node SLURM cluster on localhost, sourced by tests/slurm/run.sh.
#
#   slurm_install            apt-get slurm-wlm + munge when slurmctld/munged are missing
#   slurm_start DIR          write DIR/etc/slurm.conf, start munged, slurmctld, slurmd (all
#                            private to DIR: own munge socket and key, own ports, own state);
#                            exports SLURM_CONF so sbatch/squeue/sinfo talk to this cluster
#   slurm_stop               stop exactly the daemons slurm_start started
#
# The node has this machine's cores and memory and one GRES "gpu" without a device file, so a
# job that asks for --gpus=1 is scheduled the way it is on a GPU cluster (the job itself runs on
# the CPU). No accounting daemon: job states come from squeue (MinJobAge keeps finished jobs
# visible), and every finished job is written to DIR/jobcomp.log (jobcomp/filetxt).

SLURM_DAEMON_PIDS=()

slurm_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "tests/slurm: slurm-wlm and munge are not installed and this is not root;" \
             "install them (apt-get install slurm-wlm munge) or run as root" >&2
        return 1
    fi
    echo "tests/slurm: installing slurm-wlm and munge (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null
}

_free_port() {
    python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

_wait_for() {  # _wait_for SECONDS CMD...: poll CMD until it succeeds
    local limit=$1; shift
    local t=0
    until "$@" >/dev/null 2>&1; do
        sleep 1; t=$((t + 1))
        if [ "$t" -ge "$limit" ]; then return 1; fi
    done
}

slurm_start() {
    local dir=$1
    mkdir -p "$dir"/{etc,state,spool/localhost,log,munge}
    chmod 700 "$dir/munge"
    local user cpus mem_mb ctl_port d_port hw
    user=$(id -un)
    # this machine's sockets/cores/threads as slurmd sees them (NodeName and memory replaced)
    hw=$(slurmd -C 2>/dev/null | head -1 | tr ' ' '\n' \
        | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS
    [ -n "$hw" ] || hw="CPUs=$cpus"
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    ctl_port=$(_free_port)
    d_port=$(_free_port)
    SLURM_TEST_CPUS=$cpus
    SLURM_TEST_MEM_MB=$mem_mb

    # munge: own key, socket, pid and log file (the system's munged, if any, is left alone)
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    _wait_for 10 test -S "$dir/munge/munge.sock" || { echo "tests/slurm: munged did not start" >&2; return 1; }
    SLURM_DAEMON_PIDS+=("$(cat "$dir/munge/munged.pid")")

    cat > "$dir/etc/slurm.conf" <<EOF
ClusterName=sopcorrtest
SlurmctldHost=localhost
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 $hw RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    # a GPU GRES without a device file: scheduling only
    echo "NodeName=localhost Name=gpu Count=1 File=/dev/null" > "$dir/etc/gres.conf"
    export SLURM_CONF="$dir/etc/slurm.conf"
    # snakemake-executor-plugin-slurm-jobstep (0.6) removes every SLURM_* variable but the job
    # ids from the environment of the `srun` it starts inside the job, SLURM_CONF included, so
    # that srun would look for /etc/slurm/slurm.conf. A real cluster has its config there (or
    # configless via slurmd); this private cluster puts an srun first on PATH that knows it.
    mkdir -p "$dir/bin"
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v srun)" > "$dir/bin/srun"
    chmod +x "$dir/bin/srun"
    export PATH="$dir/bin:$PATH"

    slurmctld -D -i -f "$SLURM_CONF" > "$dir/log/slurmctld.out" 2>&1 &
    SLURM_DAEMON_PIDS+=("$!")
    _wait_for 30 scontrol ping || { echo "tests/slurm: slurmctld did not answer; see $dir/log" >&2; tail -20 "$dir/log/slurmctld.log" >&2; return 1; }
    slurmd -D -N localhost -f "$SLURM_CONF" > "$dir/log/slurmd.out" 2>&1 &
    SLURM_DAEMON_PIDS+=("$!")
    _slurm_node_idle() { sinfo -h -N -o %t | grep -q '^idle'; }
    if ! _wait_for 60 _slurm_node_idle; then
        echo "tests/slurm: the node did not become idle; see $dir/log" >&2
        sinfo -N -l >&2 || true
        tail -20 "$dir/log/slurmd.log" >&2 || true
        return 1
    fi
}

slurm_stop() {
    local i pid
    # reverse order: slurmd, slurmctld, munged
    for ((i = ${#SLURM_DAEMON_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SLURM_DAEMON_PIDS[$i]}
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SLURM_DAEMON_PIDS[@]}"; do
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    SLURM_DAEMON_PIDS=()
}
