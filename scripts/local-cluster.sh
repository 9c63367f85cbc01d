#!/usr/bin/env bash
# A single-node Slurm cluster with accounting and a PostgreSQL-backed MLflow server, all on 127.0.0.1 of this machine:
# to try the harness's cluster path (docs/cluster.md) and for its cluster tests (tests/test_cluster.py). Run as root.
#
#   scripts/local-cluster.sh install   apt-get the daemons (slurmctld slurmd slurm-client munge slurmdbd mariadb-server,
#                                      postgresql if missing); the MLflow server's driver: pip install -e '.[cluster]'
#   scripts/local-cluster.sh up        start munge, MariaDB, slurmdbd, slurmctld, slurmd, PostgreSQL and `mlflow server`
#   eval "$(scripts/local-cluster.sh env)"   SLURM_CONF, MLFLOW_TRACKING_URI, LOCAL_CLUSTER_DIR, LOCAL_CLUSTER_PARTITION
#   scripts/local-cluster.sh down      stop every daemon (by its PID and process group) and remove the state
#
# All state (configurations, databases, logs, spool, PIDs) is in one folder, $LOCAL_CLUSTER_DIR (default
# ${TMPDIR:-/tmp}/ddim-local-cluster); Slurm's configuration is not in /etc: the exports of `env` point the Slurm
# commands at it. Each daemon runs in the foreground under setsid, its PID in $LOCAL_CLUSTER_DIR/pids/.
# PYTHON names the interpreter that runs `mlflow server` (default: python3 from PATH; it needs mlflow and psycopg2).
set -euo pipefail

STATE=${LOCAL_CLUSTER_DIR:-${TMPDIR:-/tmp}/ddim-local-cluster}
PYTHON=${PYTHON:-python3}
PARTITION=debug
APT_PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

say() { printf '%s\n' "local-cluster: $*" >&2; }
die() { say "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for SECONDS WHAT COMMAND...: poll COMMAND each 0.5 s; fail with WHAT and the log's tail after SECONDS.
wait_for() {
  local limit=$1 what=$2 log=$3; shift 3
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if (( $(date +%s) > deadline )); then
      say "$what did not start within ${limit} s; the end of $log:"
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

# start NAME LOG COMMAND...: COMMAND under setsid in the background (its own session and process group), PID kept.
start() {
  local name=$1 log=$2; shift 2
  setsid "$@" >"$log" 2>&1 < /dev/null &
  echo $! > "$STATE/pids/$name"
}

# stop NAME...: SIGTERM to each daemon's process group (its children go too), all at once; SIGKILL to what is left
# after 5 s (the state is thrown away: nothing to save).
stop() {
  local name pid pids=() i
  for name in "$@"; do
    [[ -f $STATE/pids/$name ]] || continue
    pid=$(cat "$STATE/pids/$name")
    pids+=("$pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for i in $(seq 10); do
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && break; pid=""; done
    [[ -z ${pid:-} ]] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for name in "$@"; do rm -f "$STATE/pids/$name"; done
}

install_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  # PostgreSQL only if there is none (installing the metapackage over a versioned one upgrades its packages)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  if (( ${#missing[@]} )); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

write_slurm_conf() {
  local node=$1 cpus=$2
  cat > "$STATE/etc/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=localhost
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/slurm/ctld
SlurmdSpoolDir=$STATE/slurm/d
SlurmctldPidFile=$STATE/slurm/slurmctld.pid
SlurmdPidFile=$STATE/slurm/slurmd.pid
SlurmctldLogFile=$STATE/logs/slurmctld.log
SlurmdLogFile=$STATE/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
KillWait=10
MinJobAge=60
InactiveLimit=0
# Accounting: without it sacct answers nothing, and a job that dies without a result cannot be told from one that
# is still running (docs/cluster.md).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=8000 State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/slurm/slurmdbd.pid
LogFile=$STATE/logs/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MARIADB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$STATE/etc/slurmdbd.conf"
}

up() {
  local t0 t pgbin node cpus
  t0=$(now)
  [[ $(id -u) == 0 ]] || die "run it as root (the daemons run as root, munge and PostgreSQL as their users)"
  [[ -e $STATE/pids ]] && die "a local cluster is already up in $STATE: scripts/local-cluster.sh down first"
  for p in slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db sbatch; do
    command -v "$p" >/dev/null || die "$p is missing: scripts/local-cluster.sh install"
  done
  pgbin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1) || true
  [[ -x $pgbin/initdb ]] || die "PostgreSQL is missing: scripts/local-cluster.sh install"
  "$PYTHON" -c 'import mlflow, psycopg2' 2>/dev/null \
    || die "$PYTHON lacks mlflow or psycopg2 (the server's PostgreSQL driver): pip install -e '.[cluster]'"

  mkdir -p "$STATE"/{pids,logs,etc,slurm/ctld,slurm/d,mariadb,artifacts,run}
  chmod 755 "$STATE"
  SLURMCTLD_PORT=$(free_port); SLURMD_PORT=$(free_port); DBD_PORT=$(free_port)
  MARIADB_PORT=$(free_port); PG_PORT=$(free_port); MLFLOW_PORT=$(free_port)
  node=$(hostname -s); cpus=$(nproc)
  write_slurm_conf "$node" "$cpus"
  export SLURM_CONF=$STATE/etc/slurm.conf

  # PostgreSQL and the MLflow server first: the server takes the longest to answer (its workers import mlflow)
  t=$(now)
  install -d -o postgres -g postgres "$STATE/pg" "$STATE/run/pg"
  runuser -u postgres -- "$pgbin/initdb" -D "$STATE/pg/data" --auth=trust -E UTF8 --locale=C.UTF-8 -U postgres \
    > "$STATE/logs/initdb.log" 2>&1
  start postgres "$STATE/logs/postgres.log" runuser -u postgres -- "$pgbin/postgres" -D "$STATE/pg/data" \
    -h 127.0.0.1 -p "$PG_PORT" -k "$STATE/run/pg"
  wait_for 60 PostgreSQL "$STATE/logs/postgres.log" "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
  "$pgbin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE mlflow" >/dev/null
  say "PostgreSQL up on 127.0.0.1:$PG_PORT in $(since "$t") s"
  start mlflow "$STATE/logs/mlflow.log" "$PYTHON" -m mlflow server \
    --backend-store-uri "postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/mlflow" \
    --artifacts-destination "$STATE/artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 2
  local t_mlflow; t_mlflow=$(now)

  t=$(now)
  install -d -o munge -g munge -m 755 /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    start munge "$STATE/logs/munged.log" runuser -u munge -- munged -F
    wait_for 20 munge "$STATE/logs/munged.log" sh -c 'munge -n | unmunge'
  fi
  mariadb-install-db --no-defaults --datadir="$STATE/mariadb" --user=root --auth-root-authentication-method=normal \
    --skip-test-db > "$STATE/logs/mariadb-install.log" 2>&1
  start mariadb "$STATE/logs/mariadb.log" mariadbd --no-defaults --datadir="$STATE/mariadb" --user=root \
    --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$STATE/run/mariadb.sock" --skip-name-resolve \
    --pid-file="$STATE/run/mariadb.pid"
  wait_for 60 MariaDB "$STATE/logs/mariadb.log" mariadb -S "$STATE/run/mariadb.sock" -u root -e 'SELECT 1'
  mariadb -S "$STATE/run/mariadb.sock" -u root -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  start slurmdbd "$STATE/logs/slurmdbd.out" slurmdbd -D
  wait_for 60 slurmdbd "$STATE/logs/slurmdbd.log" grep -q "slurmdbd version .* started" "$STATE/logs/slurmdbd.log"
  start slurmctld "$STATE/logs/slurmctld.out" slurmctld -D -i -f "$SLURM_CONF"
  wait_for 60 slurmctld "$STATE/logs/slurmctld.log" scontrol ping
  start slurmd "$STATE/logs/slurmd.out" slurmd -D -f "$SLURM_CONF"
  wait_for 60 "slurmd (node $node idle)" "$STATE/logs/slurmd.log" \
    sh -c "sinfo -h -N -n '$node' -o %T | grep -qx idle"
  wait_for 60 "the cluster's record in the accounting database" "$STATE/logs/slurmdbd.log" \
    sh -c "sacctmgr -n -P list cluster format=cluster | grep -qx local"
  say "Slurm up (node $node, $cpus CPUs, partition $PARTITION, accounting on) in $(since "$t") s"

  wait_for 300 "the MLflow server" "$STATE/logs/mlflow.log" \
    "$PYTHON" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$MLFLOW_PORT/health', timeout=5)"
  say "MLflow server up on http://127.0.0.1:$MLFLOW_PORT in $(since "$t_mlflow") s"
  env_lines > "$STATE/env"
  say "up in $(since "$t0") s; eval \"\$($0 env)\" for its settings; $0 down to stop it"
}

env_lines() {
  cat <<EOF
export LOCAL_CLUSTER_DIR=$STATE
export SLURM_CONF=$STATE/etc/slurm.conf
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export LOCAL_CLUSTER_PARTITION=$PARTITION
EOF
}

down() {
  local t0 name
  t0=$(now)
  [[ -d $STATE/pids ]] || { say "no local cluster in $STATE"; rm -rf "$STATE"; return 0; }
  export SLURM_CONF=$STATE/etc/slurm.conf
  # its jobs first (slurmd would leave their processes behind), then the daemons, the databases last
  local jobs i
  jobs=$(squeue -h -o %i 2>/dev/null) || true
  if [[ -n $jobs ]]; then
    scancel --quiet $jobs 2>/dev/null || true
    for i in $(seq 30); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
  fi
  stop slurmd slurmctld mlflow
  stop slurmdbd munge
  stop mariadb postgres  # the databases last: slurmdbd and the server write to them until they stop
  rm -rf "$STATE"
  say "down in $(since "$t0") s"
}

case ${1:-} in
  install) install_packages ;;
  up) up ;;
  env) [[ -f $STATE/env ]] || die "no local cluster is up in $STATE: scripts/local-cluster.sh up"; cat "$STATE/env" ;;
  down) down ;;
  *) die "usage: $0 install|up|env|down" ;;
esac
