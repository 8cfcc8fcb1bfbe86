#!/usr/bin/env bash
# Checks the page of `locus serve` (GET /) in headless Chromium: the page, opened with
# `?text=SENTENCE`, posts the sentence to /translate and shows the answer; the DOM Chromium
# dumps must hold the translation `POST /translate` gives for it. Also saves a screenshot.
#
#   scripts/check-serve-page.sh --checkpoint DIR [--text "ein hund läuft"] [--screenshot FILE]
#
# Needs chromium (Debian: apt-get install chromium) and curl. Not part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/start-serve.sh

checkpoint="" text="Ein Hund läuft über die Wiese." screenshot=${TMPDIR:-/tmp}/locus-serve-page.png
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) checkpoint=$2; shift 2 ;;
    --text) text=$2; shift 2 ;;
    --screenshot) screenshot=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$checkpoint" ] || { echo "usage: $0 --checkpoint DIR [--text SENTENCE] [--screenshot FILE]" >&2; exit 2; }
locus=${LOCUS:-${CARGO_TARGET_DIR:-target}/release/locus}
[ -x "$locus" ] || { echo "no $locus: build it with cargo build --release -p locus-cli" >&2; exit 2; }
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "no chromium: apt-get install chromium" >&2; exit 2; }

log=$(mktemp) server="" profile=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$log" "$profile"' EXIT
start_serve "$locus" "$log" "$checkpoint"

body=$(python3 -c 'import json, sys; print(json.dumps({"text": [sys.argv[1]]}))' "$text")
expected=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$body" "http://$address/translate" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["translations"][0])')
query=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$text")
url="http://$address/?text=$query"
flags=(--headless --no-sandbox --disable-gpu --user-data-dir="$profile" --virtual-time-budget=10000)
dom=$("$chromium" "${flags[@]}" --dump-dom "$url" 2>/dev/null)
"$chromium" "${flags[@]}" --window-size=900,600 --screenshot="$screenshot" "$url" >/dev/null 2>&1 || true

# The translation as the page shows it: the text of <div id="translation" data-done="true">.
shown=$(printf '%s' "$dom" | python3 -c '
import html.parser, sys
class Page(html.parser.HTMLParser):
    inside, done, text = False, False, ""
    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id") == "translation":
            self.inside, self.done = True, attrs.get("data-done") == "true"
    def handle_endtag(self, tag):
        self.inside = False
    def handle_data(self, data):
        if self.inside:
            self.text += data
page = Page()
page.feed(sys.stdin.read())
print(page.text if page.done else "<no translation shown>")')
echo "source:   $text"
echo "API:      $expected"
echo "page:     $shown"
[ -f "$screenshot" ] && echo "screenshot: $screenshot"
if [ "$shown" != "$expected" ]; then
  echo "FAILED: the page does not show the API's translation" >&2
  exit 1
fi
echo "ok"
