#!/usr/bin/env bash
# Runs Ceph's own FileStore and BlueStore (Debian's ceph-osd, Pacific) under the OSD's
# built-in bench command, on the filesystem that holds --dir, and optionally our
# `os-bench --workload osd-bench` with the same shapes, interleaved run by run.
#
# One monitor and one OSD per store on 127.0.0.1, auth none, osd_bench_* caps raised.
# BlueStore uses a file-backed block device (DATA/block, created by mkfs); FileStore keeps its journal file in its
# data directory. Each store gets one dropped warm-up run per shape, then --reps runs;
# every run and the medians are printed. Daemons and --dir are removed on exit.
#
# Needs ports 3300, 6789 and 6800-7300 free on 127.0.0.1, and
#   apt-get install -y ceph-osd ceph-mon ceph-common jq
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/ceph-compare.sh [--store filestore|bluestore|both] [--reps N]
         [--shapes small,large] [--small-total BYTES] [--large-total BYTES]
         [--dir DIR] [--ostore-bench PATH] [--ostore-backends LIST] [--out FILE] [--ssd]
  --store            Ceph store(s) to run (default both)
  --reps             measured runs per store and shape, after one dropped warm-up (default 5)
  --shapes           small: TOTAL 4 KiB writes into 100 pre-written 4 MiB objects
                     (ceph tell osd.N bench TOTAL 4096 4194304 100);
                     large: TOTAL in 4 MiB writes to new objects
                     (ceph tell osd.N bench TOTAL 4194304)   (default small,large)
  --small-total      TOTAL bytes of the small shape (default 819200000 = 200,000 writes)
  --large-total      TOTAL bytes of the large shape (default 4294967296 = 1,024 writes)
  --dir              scratch directory, removed at exit (default /var/tmp/ceph-compare)
  --ostore-bench     our os-bench binary; if given, after each Ceph rep it runs
                     `os-bench --workload osd-bench` with the same shapes in DIR/ours
  --ostore-backends  backends for os-bench (default memstore,kvstore,filestore)
  --out              also write every run as TSV here
  --ssd              make BlueStore use its SSD settings (bluestore_debug_enforce_settings=ssd)
                     even if the disk reports itself rotational, as virtio disks often do
EOF
}

stores=both
reps=5
shapes=small,large
small_total=819200000
large_total=4294967296
dir=/var/tmp/ceph-compare
ostore_bench=
ostore_backends=memstore,kvstore,filestore
out=
ssd=default
while [ $# -gt 0 ]; do
    case $1 in
        --store) stores=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --shapes) shapes=$2; shift 2 ;;
        --small-total) small_total=$2; shift 2 ;;
        --large-total) large_total=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --ostore-bench) ostore_bench=$2; shift 2 ;;
        --ostore-backends) ostore_backends=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --ssd) ssd=ssd; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
case $stores in
    both) stores="filestore bluestore" ;;
    filestore | bluestore) ;;
    *) usage >&2; exit 2 ;;
esac
shapes=${shapes//,/ }
for s in $shapes; do
    case $s in small | large) ;; *) usage >&2; exit 2 ;; esac
done
for c in ceph ceph-mon ceph-osd monmaptool ceph-authtool jq; do
    command -v "$c" >/dev/null || { echo "ceph-compare: $c not found (apt-get install -y ceph-osd ceph-mon ceph-common jq)" >&2; exit 1; }
done
if [ -n "$ostore_bench" ] && [ ! -x "$ostore_bench" ]; then
    echo "ceph-compare: $ostore_bench is not executable" >&2
    exit 1
fi
if [ -e "$dir" ]; then
    echo "ceph-compare: $dir exists; remove it or pass --dir" >&2
    exit 1
fi

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$dir/run"
conf=$dir/ceph.conf
fsid=$(uuidgen)
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
log_file = $dir/\$name.log
pid_file = $dir/run/\$name.pid
keyring = $dir/keyring
mon_allow_pool_size_one = true
osd_pool_default_size = 1
[mon]
mon_data = $dir/\$name
[osd]
osd_data = $dir/\$name
osd_memory_target = 2147483648
osd_crush_update_on_start = false
osd_bench_max_block_size = 67108864
osd_bench_small_size_max_iops = 100000000
osd_bench_large_size_max_throughput = 107374182400
osd_bench_duration = 3600
# ext4: FileStore refuses long object names on it unless these are lowered
osd_max_object_name_len = 256
osd_max_object_namespace_len = 64
osd_journal = $dir/\$name/journal
osd_journal_size = 5120
bluestore_block_create = true
bluestore_block_size = 10737418240
bluestore_debug_enforce_settings = $ssd
EOF

c() { timeout 120 ceph -c "$conf" "$@"; }

echo "== $(ceph --version)"
echo "== $(uname -r), $(nproc) CPUs; $dir is on $(df --output=source,fstype "$dir/.." | tail -1)"

# The monitor.
ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
ceph-mon -c "$conf" -i a -f 2>"$dir/mon.a.stderr" &
pids+=($!)
for _ in $(seq 60); do
    c -s --connect-timeout 2 >/dev/null 2>&1 && break
    sleep 1
done
c -s --connect-timeout 5 >/dev/null

# One OSD per store: osd.0, osd.1 in the order of --store.
declare -A osd_of
for st in $stores; do
    uuid=$(uuidgen)
    id=$(c osd new "$uuid")
    osd_of[$st]=$id
    name=osd.$id
    mkdir -p "$dir/$name"
    ceph-osd -c "$conf" -i "$id" --osd-objectstore "$st" --mkfs --osd-uuid "$uuid" \
        >"$dir/$name.mkfs.log" 2>&1 || { cat "$dir/$name.mkfs.log" >&2; exit 1; }
    ceph-osd -c "$conf" -i "$id" --osd-objectstore "$st" -f 2>"$dir/$name.stderr" &
    pids+=($!)
done
for st in $stores; do
    id=${osd_of[$st]}
    for _ in $(seq 120); do
        [ "$(c osd dump -f json | jq ".osds[] | select(.osd == $id) | .up")" = 1 ] && break
        sleep 1
    done
    [ "$(c osd dump -f json | jq ".osds[] | select(.osd == $id) | .up")" = 1 ] ||
        { echo "ceph-compare: osd.$id ($st) did not come up; see $dir/osd.$id.log" >&2; exit 1; }
    echo "== osd.$id: $(c tell "osd.$id" version -f json | jq -r .version), objectstore $(c osd metadata "$id" -f json | jq -r .osd_objectstore), rotational $(c osd metadata "$id" -f json | jq -r '.rotational // .bluestore_bdev_rotational // "?"')"
done

bench_args() { # shape -> the arguments of ceph tell osd.N bench
    case $1 in
        small) echo "$small_total 4096 4194304 100" ;;
        large) echo "$large_total 4194304" ;;
    esac
}

results=$dir/results.tsv
printf 'rep\tstore\tshape\tbytes_per_sec\tiops\tsecs\tloadavg\n' >"$results"
load() { cut -d' ' -f1-3 /proc/loadavg; }

ceph_run() { # rep store shape
    local id=${osd_of[$2]} js l
    l=$(load)
    # shellcheck disable=SC2046
    js=$(c tell "osd.$id" bench $(bench_args "$3") -f json)
    printf '%s\tceph-%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" \
        "$(jq -r .bytes_per_sec <<<"$js")" "$(jq -r .iops <<<"$js")" \
        "$(jq -r .elapsed_sec <<<"$js")" "$l" | tee -a "$results"
}

ours_run() { # rep shape
    local bs total l
    case $2 in
        small) bs=4096 total=$small_total ;;
        large) bs=4194304 total=$large_total ;;
    esac
    l=$(load)
    rm -rf "$dir/ours"
    "$ostore_bench" --backend "$ostore_backends" --workload osd-bench --block-size "$bs" \
        --total "$total" --dir "$dir/ours" --json "$dir/ours.json" >"$dir/ours.log" 2>&1 ||
        { cat "$dir/ours.log" >&2; exit 1; }
    jq -r --arg rep "$1" --arg shape "$2" --arg l "$l" \
        '.results[] | [$rep, "ostore-" + .backend, $shape, (.mb_per_sec * 1e6), .ops_per_sec, .secs, $l] | @tsv' \
        "$dir/ours.json" | tee -a "$results"
    rm -rf "$dir/ours"
}

for st in $stores; do
    for sh in $shapes; do
        echo "== warm-up (dropped): osd.${osd_of[$st]} ($st) bench $(bench_args "$sh")"
        ceph_run 0 "$st" "$sh" >/dev/null
    done
done
echo "== runs (bytes/s, IOPS, seconds, load average before the run)"
printf 'rep\tstore\tshape\tbytes_per_sec\tiops\tsecs\tloadavg\n'
for rep in $(seq "$reps"); do
    for st in $stores; do
        for sh in $shapes; do
            ceph_run "$rep" "$st" "$sh"
        done
    done
    if [ -n "$ostore_bench" ]; then
        for sh in $shapes; do
            ours_run "$rep" "$sh"
        done
    fi
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "== medians of $reps runs"
printf 'store\tshape\tMB/s\tIOPS\n'
tail -n +2 "$results" | awk -F'\t' '$1 > 0 { print $2 "\t" $3 }' | sort -u | while IFS=$'\t' read -r st sh; do
    bps=$(awk -F'\t' -v s="$st" -v h="$sh" '$1 > 0 && $2 == s && $3 == h { print $4 }' "$results" | median)
    iops=$(awk -F'\t' -v s="$st" -v h="$sh" '$1 > 0 && $2 == s && $3 == h { print $5 }' "$results" | median)
    printf '%s\t%s\t%.1f\t%.0f\n' "$st" "$sh" "$(awk -v b="$bps" 'BEGIN { print b / 1e6 }')" "$iops"
done
[ -z "$out" ] || cp "$results" "$out"
