#!/usr/bin/env bash
# A one-node Slurm cluster for tests/test_slurm.py: Debian's munge, slurmctld and slurmd, started by
# hand (no systemd), without an accounting database.
#
#   start_slurm.sh up PARTITION...  install what is missing, write /etc/slurm/slurm.conf with one
#                                   partition per name (the first is the default, all on this node),
#                                   start the daemons that are down and wait until the node takes
#                                   jobs; the last line of output is "started: <daemons it started>"
#   start_slurm.sh down DAEMON...   stop the named daemons (munged, slurmctld, slurmd), by pid file
#   start_slurm.sh two-nodes DIR NODE NODE
#                                   a second, private cluster of two nodes on this machine: its own
#                                   slurm.conf, ports, state and logs under DIR, one slurmd per node
#                                   (slurmd -N), each NODE a name that resolves to this machine;
#                                   use it with SLURM_CONF=DIR/slurm.conf, stop it with stop-two DIR
#   start_slurm.sh stop-two DIR     stop that cluster's slurmctld and slurmd, by their pid files
#
# Safe to run again: packages are installed once, slurm.conf is rewritten (and the Slurm daemons
# restarted) only when it changes, and running daemons are left alone.
# Exit status 3: this machine cannot have Slurm (not root, or apt cannot install the packages).
set -euo pipefail

PACKAGES=(munge slurmctld slurmd slurm-client)
CONF=/etc/slurm/slurm.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
# Finished jobs, one line each: the test reads it to see that every job went through Slurm.
JOB_LOG=$LOG_DIR/jobcomp.log
declare -A PID_FILE=(
  [munged]=/run/munge/munged.pid
  [slurmctld]=/run/slurmctld.pid
  [slurmd]=/run/slurmd.pid
)

cannot_have_slurm() {
  echo "start_slurm.sh: $*" >&2
  exit 3
}

fail() {
  echo "start_slurm.sh: $*" >&2
  exit 1
}

running() {
  local pid_file=${PID_FILE[$1]}
  [[ -s $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

# wait_until SECONDS COMMAND...: run COMMAND every half second until it succeeds or time is up.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

stop() {
  local daemon=$1
  running "$daemon" || return 0
  local pid
  pid=$(cat "${PID_FILE[$daemon]}")
  kill "$pid"
  wait_until 20 bash -c "! kill -0 $pid" || fail "$daemon (pid $pid) did not stop"
}

install_packages() {
  local missing=() package
  for package in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null) == *"ok installed" ]] ||
      missing+=("$package")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || cannot_have_slurm "no apt-get to install ${missing[*]}"
  local apt_log
  apt_log=$(mktemp)
  if ! {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    rm -f "$apt_log"
    cannot_have_slurm "apt-get could not install ${missing[*]}"
  fi
  rm -f "$apt_log"
}

munge_answers() {
  munge --no-input | unmunge
}

start_munge() {
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  if ! running munged; then
    runuser -u munge -- /usr/sbin/munged
    STARTED+=(munged)
  fi
  wait_until 10 munge_answers || fail "munged does not answer"
}

# The node as slurmd sees it (CPUs, sockets, cores, threads), minus 1 GB of memory for the
# submitting Snakemake and the system, reachable on the loopback address.
node_line() {
  local hardware memory
  hardware=$(slurmd -C | head -n 1)
  memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
  echo "${hardware/RealMemory=$memory/RealMemory=$((memory - 1024))} NodeAddr=127.0.0.1 State=UNKNOWN"
}

# Prints 1 when slurm.conf changed, 0 when it already said the same.
write_conf() {
  local host=$1
  shift
  local partitions="" name default=YES
  for name in "$@"; do
    partitions+="PartitionName=$name Nodes=$host Default=$default MaxTime=INFINITE State=UP"$'\n'
    default=NO
  done
  install -d -m 0755 /etc/slurm "$LOG_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
  local new_conf
  new_conf=$(mktemp)
  cat >"$new_conf" <<EOF
# Written by tests/slurm/start_slurm.sh: one node, no accounting database.
ClusterName=helox-test
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=${PID_FILE[slurmctld]}
SlurmdPidFile=${PID_FILE[slurmd]}
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No systemd, so no cgroups: track processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOB_LOG
# Finished jobs stay visible to squeue for 10 minutes: the Snakemake executor reads their state there.
MinJobAge=600
# A client retries an unreachable controller once a second for MessageTimeout seconds (default
# 10), and the Snakemake Slurm plugin runs "scontrol show config" whenever Snakemake starts: with
# the daemons down, every snakemake call in the suite would wait 9 s for it, and waits 4 s so.
MessageTimeout=5
ReturnToService=2
SlurmdTimeout=60
KillWait=5
$(node_line)
$partitions
EOF
  if cmp -s "$new_conf" "$CONF"; then
    rm -f "$new_conf"
    echo 0
  else
    mv "$new_conf" "$CONF"
    chmod 0644 "$CONF"
    echo 1
  fi
}

node_takes_jobs() {
  [[ $(sinfo --noheader --format=%t) =~ ^(idle|mix|alloc) ]]
}

up() {
  (($# > 0)) || fail "name at least one partition"
  ((EUID == 0)) || cannot_have_slurm "installing and starting Slurm needs root"
  install_packages
  STARTED=()
  start_munge
  local host changed daemon
  host=$(hostname -s)
  changed=$(write_conf "$host" "$@")
  if ((changed)); then
    stop slurmd
    stop slurmctld
  fi
  for daemon in slurmctld slurmd; do
    if ! running "$daemon"; then
      "/usr/sbin/$daemon"
      STARTED+=("$daemon")
    fi
    if [[ $daemon == slurmctld ]]; then
      wait_until 30 bash -c "scontrol ping | grep -q UP" || fail "slurmctld does not answer"
    fi
  done
  if ! wait_until 30 node_takes_jobs; then
    scontrol update NodeName="$host" State=RESUME
    wait_until 30 node_takes_jobs || fail "node $host does not take jobs: $(sinfo --long --Node)"
  fi
  sinfo
  echo "started: ${STARTED[*]}"
}

down() {
  local daemon
  for daemon in slurmd slurmctld munged; do
    if [[ " $* " == *" $daemon "* ]]; then
      stop "$daemon"
    fi
  done
}

# One CPU and 2 GB for each node; both slurmd listen on 127.0.0.1, on ports beside the one-node
# cluster's (6817, 6818), so that the two clusters can run at once.
two_nodes() {
  (($# == 3)) || fail "usage: start_slurm.sh two-nodes DIR NODE NODE"
  ((EUID == 0)) || cannot_have_slurm "installing and starting Slurm needs root"
  local dir=$1 first=$2 second=$3
  install_packages
  STARTED=()
  start_munge
  install -d -m 0755 "$dir/state" "$dir/log" "$dir/spool/$first" "$dir/spool/$second"
  cat >"$dir/slurm.conf" <<CONF
# Written by tests/slurm/start_slurm.sh two-nodes: two nodes on one machine.
ClusterName=helox-two
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=6917
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# sbatch --wait asks after 2 s, then 4 times longer each time while under MinJobAge / 2 (2, 8,
# 32 s...): at 5 it asks every 2 s, and a finished job is kept at least that long.
MinJobAge=5
ReturnToService=2
KillWait=5
NodeName=$first NodeAddr=127.0.0.1 Port=6918 CPUs=1 RealMemory=2000 State=UNKNOWN
NodeName=$second NodeAddr=127.0.0.1 Port=6919 CPUs=1 RealMemory=2000 State=UNKNOWN
PartitionName=two Nodes=$first,$second Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmctld -f "$SLURM_CONF"
  wait_until 30 bash -c "scontrol ping | grep -q UP" || fail "slurmctld does not answer"
  /usr/sbin/slurmd -f "$SLURM_CONF" -N "$first"
  /usr/sbin/slurmd -f "$SLURM_CONF" -N "$second"
  wait_until 30 bash -c '[[ $(sinfo --noheader --states=idle --format=%D) == 2 ]]' ||
    fail "the two nodes do not take jobs: $(sinfo --Node 2>&1)"
  echo "started: ${STARTED[*]}"
}

stop_two() {
  local pid_file pid stopping=()
  for pid_file in "$1"/slurmd-*.pid "$1/slurmctld.pid"; do
    [[ -s $pid_file ]] || continue
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null && stopping+=("$pid")
  done
  # All three told at once, then waited for: each takes a few seconds to shut down.
  for pid in "${stopping[@]}"; do
    wait_until 20 bash -c "! kill -0 $pid" || fail "pid $pid did not stop"
  done
}

case ${1:-} in
  up) shift && up "$@" ;;
  down) shift && down "$@" ;;
  two-nodes) shift && two_nodes "$@" ;;
  stop-two) shift && stop_two "$@" ;;
  *) fail "usage: start_slurm.sh up PARTITION... | down DAEMON... | two-nodes DIR NODE NODE | stop-two DIR" ;;
esac
