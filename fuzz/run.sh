#!/bin/sh
# Runs every fuzz target in turn for SECONDS each (default 60), one at a time, over
# its checked-in corpus. New inputs go to a scratch copy; minimise and check in with
#   cargo fuzz cmin TARGET corpus/TARGET
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"frame_decode dns_decode dns_tcp edr_ingest config_load pcap_reader"}
export RUSTC_BOOTSTRAP=1
for t in $targets; do
    mkdir -p "corpus/$t" "target/scratch/$t"
    echo "== $t ($secs s)"
    cargo fuzz run -O "$t" "target/scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -max_len=65536 \
        -print_final_stats=1 2>&1 | tee "target/scratch/$t.log" |
        grep -E '^(stat::|#[0-9]+ +DONE|==[0-9]+== ERROR|SUMMARY|artifact_prefix)' || true
done
