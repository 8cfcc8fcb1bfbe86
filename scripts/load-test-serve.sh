#!/usr/bin/env bash
# Load test of `locus serve` on the loopback interface, against offline `locus bench translate`.
#
#   scripts/load-test-serve.sh --checkpoint DIR [--clients 16] [--seconds 60] [--max-requests 100000]
#       [--sentences-per-request 1] [--input FILE] [-- SEARCH OPTIONS, e.g. --beam 4]
#
# Starts `locus serve` on 127.0.0.1 (a free port) with the search options, runs N concurrent
# clients (Python threads, one keep-alive connection each) for the given time or request count,
# each sending source sentences of test_2016_flickr in turn, and prints sentences/s, latency
# percentiles, the error count and the server's RSS before and after. Then it stops the server
# with SIGTERM (which must exit 0), runs `locus bench translate` on the same checkpoint, input
# and search, and prints the ratio of the two throughputs. Exits 1 on any error.
#
# The binary: $LOCUS (default: target/release/locus under $CARGO_TARGET_DIR or ./target).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/start-serve.sh

checkpoint="" clients=16 seconds=60 max_requests=100000 per_request=1
input=data/multi30k/test_2016_flickr.de.gz
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) checkpoint=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --max-requests) max_requests=$2; shift 2 ;;
    --sentences-per-request) per_request=$2; shift 2 ;;
    --input) input=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown argument $1 (search options go after --)" >&2; exit 2 ;;
  esac
done
search=("$@")
[ -n "$checkpoint" ] || { echo "usage: $0 --checkpoint DIR [options] [-- search options]" >&2; exit 2; }
locus=${LOCUS:-${CARGO_TARGET_DIR:-target}/release/locus}
[ -x "$locus" ] || { echo "no $locus: build it with cargo build --release -p locus-cli" >&2; exit 2; }

log=$(mktemp) server=""
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
start_serve "$locus" "$log" "$checkpoint" "${search[@]}"
rss() { awk '/^VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$server/status"; }
echo "server $address (pid $server), search: ${search[*]:-defaults}"
echo "RSS before: $(rss)"

result=$(mktemp)
python3 - "$address" "$input" "$clients" "$seconds" "$max_requests" "$per_request" <<'PY' | tee "$result"
import gzip, http.client, json, sys, threading, time

address, path, clients, seconds, max_requests, per_request = sys.argv[1:]
clients, seconds, max_requests, per_request = int(clients), float(seconds), int(max_requests), int(per_request)
opener = gzip.open if path.endswith(".gz") else open
with opener(path, "rt", encoding="utf-8") as f:
    lines = [line.strip() for line in f if line.strip()]
host, port = address.rsplit(":", 1)
lock = threading.Lock()
latencies, errors, sentences, sent = [], [], [0], [0]
deadline = time.monotonic() + seconds

def client(index):
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    position = index * 61 % len(lines)
    while time.monotonic() < deadline:
        with lock:
            if sent[0] >= max_requests:
                return
            sent[0] += 1
        batch = [lines[(position + i) % len(lines)] for i in range(per_request)]
        position = (position + per_request) % len(lines)
        body = json.dumps({"text": batch})
        started = time.monotonic()
        try:
            connection.request("POST", "/translate", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            elapsed = time.monotonic() - started
            if response.status != 200 or len(json.loads(answer)["translations"]) != len(batch):
                with lock:
                    errors.append(f"{response.status}: {answer[:200]!r}")
                continue
            with lock:
                latencies.append(elapsed)
                sentences[0] += len(batch)
        except Exception as e:  # a broken connection counts as an error; reconnect
            with lock:
                errors.append(repr(e))
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=120)

started = time.monotonic()
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - started
latencies.sort()
def pct(q):
    return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
print(f"serve: {clients} clients, {per_request} sentence(s) per request, {elapsed:.1f} s: "
      f"{len(latencies)} requests, {sentences[0]} sentences, {sentences[0] / elapsed:.2f} sentences/s")
print(f"latency p50 {pct(0.5):.0f} ms, p95 {pct(0.95):.0f} ms, p99 {pct(0.99):.0f} ms; errors {len(errors)}")
for e in errors[:5]:
    print("  error:", e)
print(f"SERVE_SENTENCES_PER_S={sentences[0] / elapsed:.4f} ERRORS={len(errors)}")
PY
echo "RSS after: $(rss)"
kill -TERM "$server"
status=0; wait "$server" || status=$?
echo "server exit status after SIGTERM: $status"
served=$(sed -n 's/^SERVE_SENTENCES_PER_S=\([0-9.]*\) ERRORS=\([0-9]*\)$/\1/p' "$result")
errors=$(sed -n 's/^SERVE_SENTENCES_PER_S=\([0-9.]*\) ERRORS=\([0-9]*\)$/\2/p' "$result")
rm -f "$result"

echo "offline: $locus bench translate --checkpoint $checkpoint --input $input --device cpu ${search[*]}"
bench=$("$locus" bench translate --checkpoint "$checkpoint" --input "$input" --device cpu "${search[@]}" --json)
echo "$bench" | head -n 2
offline=$(echo "$bench" | tail -n 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["sentences_per_s"])')
python3 -c "import sys; s, o = float(sys.argv[1]), float(sys.argv[2]); print(f'serve {s:.2f} / offline {o:.2f} sentences/s = {s / o:.2f}')" "$served" "$offline"
[ "$status" -eq 0 ] && [ "$errors" -eq 0 ] || { echo "FAILED: exit status $status, $errors errors" >&2; exit 1; }
