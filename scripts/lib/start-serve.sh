# Sourced by the scripts that drive `locus serve` (load-test-serve.sh, check-serve-page.sh).
#
#   start_serve LOCUS LOG CHECKPOINT [SERVE OPTIONS...]
#
# Starts `LOCUS serve` on 127.0.0.1 at a free port, its stderr in LOG, and waits (at most 60 s)
# for it to print its address. Sets `server` (its pid) and `address` (host:port); exits 1, with
# the server's log, if it stops or does not start.
start_serve() {
  local locus=$1 log=$2 checkpoint=$3
  shift 3
  "$locus" serve --checkpoint "$checkpoint" --host 127.0.0.1 --port 0 --device cpu "$@" 2>"$log" &
  server=$!
  address=""
  for _ in $(seq 600); do
    address=$(sed -n 's|^locus serve: listening on http://||p' "$log")
    [ -n "$address" ] && return 0
    kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "locus serve did not start" >&2
  cat "$log" >&2
  exit 1
}
