#!/usr/bin/env bash
# CI: a one-node Slurm cluster on this machine for tests/enterprise/test_service_slurm.py.
#
# Needs Debian's slurm-wlm and munge (slurm.packages), run as root. Steps, each skipped when
# already done (the script is idempotent: on a machine where Slurm answers it only publishes):
#   1. a munge key (/etc/munge/munge.key) if there is none, and munged;
#   2. /etc/slurm/slurm.conf for one node, this host (hostname -s, address 127.0.0.1), with the
#      CPUs and memory `slurmd -C` reports, one partition "ci", one stand-in GPU (gres "gpu" whose
#      device file is /dev/null: --gres=gpu:1 is scheduled and Slurm sets CUDA_VISIBLE_DEVICES, but
#      there is no GPU behind it), no accounting daemon. A slurm.conf not written by this script is never overwritten;
#   3. slurmctld and slurmd, then wait until sinfo shows the node idle;
#   4. DEEPSEEK_TEST_SLURM=1 appended to $CI_SERVICES_ENV.
#
# What this cluster enforces: CPUs and memory as consumable resources (select/cons_tres,
# CR_Core_Memory: a job asking more --mem than the node has is refused), --mem by polling
# (jobacct_gather/linux every 2 s, OverMemoryKill: a job over its --mem is killed), --time
# (wall-clock limit), the gres count. What it does not: accounts (--account is recorded, not
# checked: there is no slurmdbd, so no associations or limits per account), sacct (no job
# accounting storage), cgroup confinement (proctrack/linuxproc, task/none: this machine may not
# offer writable cgroups).
set -euo pipefail

env_file="${CI_SERVICES_ENV:-/dev/null}"
conf=/etc/slurm/slurm.conf
marker="# written by deepseek .ci/services/slurm.sh"
host="$(hostname -s)"

publish() {
    echo "DEEPSEEK_TEST_SLURM=1" >> "$env_file"
    echo "slurm: node $host ready ($(sinfo -h -o '%P %t %c CPUs %m MB' | head -1))"
}

node_state() { sinfo -h -n "$host" -o '%t' 2> /dev/null | head -1 || true; }

if command -v sinfo > /dev/null && [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]; then
    publish
    exit 0
fi
for tool in munged slurmctld slurmd sinfo; do
    command -v "$tool" > /dev/null || { echo "slurm: $tool is not installed (apt-get install slurm-wlm munge)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "slurm: must run as root to start munged, slurmctld and slurmd"; exit 1; }

# 1. munge
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    (umask 077 && dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none)
    chown munge:munge /etc/munge/munge.key
fi
if ! munge -n < /dev/null 2> /dev/null | unmunge > /dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n < /dev/null 2> /dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
fi

# 2. slurm.conf (ours only)
if [ -e "$conf" ] && ! head -1 "$conf" | grep -qF "$marker"; then
    echo "slurm: $conf exists and was not written by this script; left as it is"
else
    node="$(slurmd -C | head -1)"
    cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<< "$node")"
    mem="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<< "$node")"
    [ -n "$cpus" ] && [ -n "$mem" ] || { echo "slurm: cannot read CPUs/RealMemory from 'slurmd -C': $node"; exit 1; }
    install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld /var/log/slurm
    install -d -o root -g root -m 0755 /var/lib/slurm/slurmd
    tmp="$(mktemp /etc/slurm/.slurm.conf.XXXXXX)"
    cat > "$tmp" << CONF
$marker
ClusterName=deepseek-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=2
MinJobAge=600
KillWait=5
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    chmod 0644 "$tmp"
    mv "$tmp" "$conf"
    printf '%s\nNodeName=%s Name=gpu File=/dev/null\n' "$marker" "$host" > /etc/slurm/gres.conf
    chmod 0644 /etc/slurm/gres.conf
fi

# 3. daemons
scontrol ping 2> /dev/null | grep -q ' is UP' || slurmctld
for _ in $(seq 100); do scontrol ping 2> /dev/null | grep -q ' is UP' && break; sleep 0.2; done
if ! { [ -s /run/slurmd.pid ] && kill -0 "$(cat /run/slurmd.pid)" 2> /dev/null; }; then
    slurmd
fi
for _ in $(seq 150); do
    state="$(node_state)"
    case "$state" in
        idle | mix | alloc) break ;;
        down* | drain* | drng*) scontrol update nodename="$host" state=resume 2> /dev/null || true ;;
    esac
    sleep 0.2
done
state="$(node_state)"
if ! [[ "$state" =~ ^(idle|mix|alloc)$ ]]; then
    echo "slurm: node $host is '${state:-unknown}' after 30 s; logs: /var/log/slurm/"
    tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log 2> /dev/null || true
    exit 1
fi
publish
