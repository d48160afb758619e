#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (slurmctld + slurmd on localhost, munge auth), for trying the
# SLURM profile and for the `slurm` tests. Root only. Debian's slurm-wlm and munge packages.
#
#   workflow/scripts/slurm_cluster.sh install   # apt-get install slurm-wlm munge (once)
#   workflow/scripts/slurm_cluster.sh up        # write slurm.conf, start munged, slurmctld, slurmd; wait for the node
#   workflow/scripts/slurm_cluster.sh status    # sinfo
#   workflow/scripts/slurm_cluster.sh down      # stop the daemons (config and spool are left for the next `up`)
#
# Settings known to work in containers: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no
# cgroup.conf, no accounting. Without accounting `sacct` cannot answer, so the Snakemake profile polls
# with `squeue` (status_command: squeue); MinJobAge is raised so finished jobs stay visible to squeue.
set -euo pipefail

CONF_DIR=/etc/slurm
SPOOL=/var/spool/slurm-interp
LOGS=/var/log/slurm-interp
NODE=$(hostname -s)

need_root() { [ "$(id -u)" = "0" ] || { echo "slurm_cluster.sh: must run as root" >&2; exit 2; }; }

install() {
    need_root
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return 0; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # leave a little memory to the system so slurmd does not drain the node for "Low RealMemory"
    mem_mb=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 9 / 10 ))
    mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOGS"
    cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=interp-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=900
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld-interp.pid
SlurmdPidFile=/run/slurmd-interp.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    if pgrep -x munged >/dev/null; then return 0; fi
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
    runuser -u munge -- munged
}

up() {
    need_root
    install
    write_conf
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 1 60); do
        if sinfo -h -N -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then
            sinfo
            return 0
        fi
        scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm_cluster.sh: the node did not become idle; see $LOGS" >&2
    sinfo -N -l >&2 || true
    tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
    exit 1
}

down() {
    need_root
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    return 0
}

case "${1:-}" in
    install) install ;;
    up) up ;;
    down) down ;;
    status) sinfo ;;
    *) echo "usage: $0 install|up|status|down" >&2; exit 2 ;;
esac
