#!/usr/bin/env bash
# Live capture benchmark: tcpreplay --topspeed into a veth pair (two network
# namespaces), `portent live` on the far end with libpcap and then AF_XDP (generic
# mode), all analytics on, flows and DNS written. Prints sent / captured / dropped.
# Needs root, iproute2, tcpreplay, jq, and a release build (cargo build --release).
#   benches/live_veth.sh [HOURS_OF_SIMULATED_TRAFFIC=0.5] [LOOPS=3]
# LIVE_ARGS adds options to both runs, e.g. LIVE_ARGS="--buffer-mb 1 --workers 1"
# to provoke (and check the accounting of) kernel and queue drops.
set -euo pipefail
cd "$(dirname "$0")/.."
hours=${1:-0.5}
loops=${2:-3}
bin=$PWD/target/release/portent
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
tag=$$
S=ptbS$tag R=ptbR$tag s=ptbs$tag r=ptbr$tag
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$R" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$S"; ip netns add "$R"
ip link add "$s" type veth peer name "$r"
ip link set "$s" netns "$S"; ip link set "$r" netns "$R"
for ns in "$S" "$R"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip -n "$S" link set "$s" up; ip -n "$R" link set "$r" up

"$bin" simulate --seed 11 --hours "$hours" --hosts 40 --out "$work/sim" --quiet
pcap=$work/sim/traffic.pcap
echo "capture: $(stat -c %s "$pcap") bytes, sent $loops times at top speed; $(nproc) cores"
printf '%-22s %10s %10s %12s %14s %10s %8s\n' source sent captured "dropped(kern)" "dropped(queue)" "tcpreplay" alerts
for mode in pcap xdp; do
  read -ra extra <<<"${LIVE_ARGS:-}"
  [ "$mode" = xdp ] && extra+=(--xdp --xdp-mode generic)
  rm -f "$work"/*.jsonl "$work/stats.json"
  ip netns exec "$R" "$bin" live -i "$r" "${extra[@]}" --metrics off \
    --alerts "$work/alerts.jsonl" --flows "$work/flows.jsonl" --dns "$work/dns.jsonl" \
    --stats "$work/stats.json" 2>"$work/live.err" &
  pid=$!
  until grep -q "capturing on" "$work/live.err"; do sleep 0.1; done
  sleep 0.5
  out=$(ip netns exec "$S" tcpreplay -i "$s" --topspeed --loop "$loops" "$pcap" 2>&1)
  sent=$(sed -n 's/.*Successful packets: *\([0-9]*\).*/\1/p' <<<"$out")
  rate=$(sed -n 's/.*Rated: [0-9.]* Bps, [0-9.]* Mbps, \([0-9.]*\) pps.*/\1/p' <<<"$out")
  sleep 2
  kill -TERM "$pid"; wait "$pid"; pid=""
  st=$work/stats.json
  captured=$(jq .packets "$st")
  kern=$(jq '[.capture.kernel_dropped, .capture.interface_dropped, .capture.ring_dropped] | map(. // 0) | add' "$st")
  queue=$(jq .dropped_packets "$st")
  alerts=$(jq .alerts "$st")
  printf '%-22s %10s %10s %12s %14s %10s %8s\n' "$mode$([ "$mode" = xdp ] && echo ' (generic)')" \
    "$sent" "$captured" "$kern" "$queue" "${rate%.*}pps" "$alerts"
done
