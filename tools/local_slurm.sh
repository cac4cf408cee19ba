#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for running the pipeline through Snakemake's real SLURM
# executor (tests/test_slurm.py, README "Running on a cluster"). Debian's slurm-wlm and munge, as root.
#
#   tools/local_slurm.sh start    # install if missing, write the config, start munged/slurmctld/slurmd
#   tools/local_slurm.sh status   # exit 0 when the node answers, with `sinfo`
#   tools/local_slurm.sh stop     # stop only the daemons this script started (by its pid files)
#
# Idempotent: `start` on a running cluster changes nothing. It refuses to touch an /etc/slurm/slurm.conf
# that it did not write (a real cluster's). State, spool, pid and log files live in $FZPLUS_SLURM_DIR
# (default /tmp/fzplus-slurm). The facts behind each setting: SPEC §14.
set -euo pipefail

STATE=${FZPLUS_SLURM_DIR:-/tmp/fzplus-slurm}
CONF=/etc/slurm/slurm.conf   # jobs' own srun calls read this path, not a SLURM_CONF of the submitting shell
MARK="# written by fzplus tools/local_slurm.sh"
PARTITION=local

die() { echo "local_slurm: $*" >&2; exit 1; }

node_up() { timeout 10 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

install_packages() {
    command -v slurmctld > /dev/null && command -v munged > /dev/null && return
    [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null \
        || die "slurm-wlm and munge are not installed and this is not a root Debian shell; install them (apt-get install slurm-wlm munge) or use your site's cluster"
    echo "local_slurm: installing slurm-wlm and munge"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > "$STATE/apt.log" 2>&1 \
        || die "apt-get install slurm-wlm munge failed; see $STATE/apt.log"
}

write_config() {
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: this machine already has a SLURM configuration; submit to it with workflow/profiles/slurm"
    fi
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 85 / 100 ))  # leave the OS its share
    mkdir -p "$STATE"/{ctld,spool,log} /etc/slurm
    cat > "$CONF.tmp" <<EOF
$MARK; regenerated on every start
ClusterName=fzplus
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    if munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then return; fi
    [[ -f /etc/munge/munge.key ]] || { mungekey --create > /dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/started.munged"
    for _ in $(seq 20); do munge -n 2> /dev/null | unmunge > /dev/null 2>&1 && return; sleep 0.5; done
    die "munged did not start; see /var/log/munge/munged.log"
}

start() {
    mkdir -p "$STATE"
    if node_up; then echo "local_slurm: already running"; sinfo; return; fi
    install_packages
    write_config
    start_munge
    pgrep -x slurmctld > /dev/null || { slurmctld -f "$CONF" && touch "$STATE/started.slurmctld"; }
    pgrep -x slurmd > /dev/null || { slurmd -f "$CONF" && touch "$STATE/started.slurmd"; }
    for _ in $(seq 60); do
        if node_up; then sinfo; return; fi
        scontrol update nodename="$(hostname -s)" state=resume > /dev/null 2>&1 || true
        sleep 0.5
    done
    die "the node did not come up within 30 s; see $STATE/log/"
}

stop_one() {  # name, pid file
    [[ -f "$STATE/started.$1" ]] || return 0
    [[ -f $2 ]] && kill "$(cat "$2")" 2> /dev/null || true
    rm -f "$STATE/started.$1"
}

stop() {
    stop_one slurmd "$STATE/slurmd.pid"
    stop_one slurmctld "$STATE/slurmctld.pid"
    stop_one munged /run/munge/munged.pid
    echo "local_slurm: stopped what this script had started"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) node_up && sinfo ;;
    *) die "usage: $0 start|status|stop" ;;
esac
