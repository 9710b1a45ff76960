#!/usr/bin/env bash
# Consume diary.changes in a consumer group with kcat (balanced KafkaConsumer mode, -G) and
# check it; the same interface and output as consume_changes.py and consume_changes.js.
#
#   consume_changes_kcat.sh --bootstrap HOST:PORT[,...] [--group G] [--topic diary.changes]
#       [--expected FILE] [--deadline 60] [--out FILE] [--report FILE] [--quiet]
#
# kcat prints each message as a JSON envelope (-J) to a raw file; this script watches that
# file until every id of --expected (one change id per line) is in it or the deadline passes,
# then stops kcat with SIGTERM (kcat then commits and leaves the group). kcat -G can exit at
# the end of the partitions by itself (-e), but "the end" is only the end of what has been
# published so far, so the wrapper waits for the ids instead.
#
# Afterwards jq turns the raw envelopes, in the order kcat received them, into one JSON line
# per change on --out (default stdout):
#   {"client","id","key","partition","offset","event_id","dup"}
# and a summary (de-duplicated on the change id; per key: one partition, increasing offsets)
# on --report, and always as the last line of stderr.
#
# Exit status: 0 every expected id was seen and every key was in order (without --expected:
# the deadline passed and every key was in order); 1 an expected id is missing at the
# deadline; 3 every id was seen but some key's changes were out of order or on two partitions;
# 2 bad arguments, or kcat failed.
set -uo pipefail

bootstrap="" group=diary-changes-kcat topic=diary.changes expected="" deadline=60
out="" report="" quiet=0
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --quiet) quiet=1; shift; continue ;;
    -h|--help) usage ;;
  esac
  [ $# -ge 2 ] || { echo "consume_changes_kcat: $1 needs a value" >&2; usage; }
  case $1 in
    --bootstrap) bootstrap=$2 ;;
    --group) group=$2 ;;
    --topic) topic=$2 ;;
    --expected) expected=$2 ;;
    --deadline) deadline=$2 ;;
    --out) out=$2 ;;
    --report) report=$2 ;;
    *) echo "consume_changes_kcat: unknown argument $1" >&2; usage ;;
  esac
  shift 2
done
[ -n "$bootstrap" ] || { echo "consume_changes_kcat: --bootstrap is required" >&2; exit 2; }
[[ $deadline =~ ^[0-9]+$ ]] && [ "$deadline" -gt 0 ] ||
  { echo "consume_changes_kcat: --deadline takes whole seconds" >&2; exit 2; }
if [ -n "$expected" ] && [ ! -r "$expected" ]; then
  echo "consume_changes_kcat: cannot read $expected" >&2; exit 2
fi
command -v kcat >/dev/null && command -v jq >/dev/null ||
  { echo "consume_changes_kcat: needs kcat and jq" >&2; exit 2; }

work=$(mktemp -d /tmp/consume-kcat.XXXXXX)
raw=$work/raw.jsonl
kcat_pid=""
cleanup() {
  [ -n "$kcat_pid" ] && kill -KILL "$kcat_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
stop_signal=""
trap 'stop_signal=TERM' TERM
trap 'stop_signal=INT' INT

# The change ids in the raw file so far; a line kcat is still writing is skipped.
ids_so_far() {
  jq -R -r 'fromjson? // empty | .payload | strings | fromjson? // empty | .id | strings' "$raw" 2>/dev/null
}
all_seen() {
  [ -n "$expected" ] || return 1
  [ -z "$(comm -23 <(grep -v '^[[:space:]]*$' "$expected" | sort -u) <(ids_so_far | sort -u))" ]
}

# kcat's own lines (rebalances, end of partition) go to our stderr unless --quiet.
errdest=/dev/stderr
[ $quiet -eq 1 ] && errdest=/dev/null
# [docs:kcat-consume]
# -G: balanced consumer group mode; -J: one JSON envelope per message; -u: unbuffered.
# A new group starts at the earliest offset; kcat commits the offsets of what it consumed.
kcat -b "$bootstrap" -G "$group" -J -u \
  -X auto.offset.reset=earliest -X fetch.wait.max.ms=100 -X session.timeout.ms=6000 \
  -X client.id="$group" \
  "$topic" >"$raw" 2>"$errdest" &
# [/docs:kcat-consume]
# A simple command in the background: $! is kcat itself, the process to signal.
kcat_pid=$!

start=$SECONDS
end=$((SECONDS + deadline))
kcat_failed=0
while [ -z "$stop_signal" ] && [ $SECONDS -lt $end ]; do
  if ! kill -0 "$kcat_pid" 2>/dev/null; then
    wait "$kcat_pid"; rc=$?; kcat_pid=""
    echo "{\"client\":\"kcat\",\"msg\":\"kcat exited early\",\"status\":$rc}" >&2
    kcat_failed=1
    break
  fi
  all_seen && break
  sleep 0.2
done
if [ -n "$kcat_pid" ]; then
  kill -TERM "$kcat_pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$kcat_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$kcat_pid" 2>/dev/null
  wait "$kcat_pid" 2>/dev/null
  kcat_pid=""
fi
elapsed=$((SECONDS - start))

# Raw envelopes -> one normalized object per message, in arrival order. kcat 1.7 prints the
# headers as a flat [name, value, ...] array; newer ones as an object.
normalize='
  fromjson? // empty
  | ((.headers // []) | if type == "array" then [.[range(0; length; 2)]] else keys end) as $hn
  | if ($hn | index("devbroker-filler")) != null then {filler: true}
    else ((.payload | strings | fromjson?) // null) as $c
    | if ($c | type) == "object" and ($c.id | type) == "string"
         and ($c.data.source.event_id | type) == "string"
      then {client: "kcat", id: $c.id, key: .key, partition: .partition, offset: .offset,
            event_id: $c.data.source.event_id}
      else {malformed: true, partition: .partition, offset: .offset} end
    end'

# [docs:kcat-check]
# De-duplicate on the change id (at least once), then check per key: one partition,
# increasing offsets.
check='
  reduce .[] as $m ({seen: {}, keys: {}, recs: [], received: 0, duplicates: 0,
                     malformed: 0, fillers: 0, violations: []};
    if $m.filler then .fillers += 1
    elif $m.malformed then .received += 1 | .malformed += 1
    else
      .received += 1
      | ($m.key // "") as $key
      | (.seen[$m.id] // false) as $dup
      | .recs += [$m + {dup: $dup}]
      | if $dup then .duplicates += 1
        else
          .seen[$m.id] = true
          | (.keys[$key] // {partition: $m.partition, last_offset: -1, changes: 0,
                             in_order: true}) as $k
          | if $k.partition != $m.partition or $m.offset <= $k.last_offset then
              .keys[$key] = ($k | .in_order = false | .changes += 1)
              | .violations += [{key: $key, partition: $m.partition, offset: $m.offset,
                                 after_partition: $k.partition, after_offset: $k.last_offset}]
            else .keys[$key] = ($k | .last_offset = $m.offset | .changes += 1) end
        end
    end)'
# [/docs:kcat-check]

summarize='
  ($exp | split("\n") | map(gsub("^\\s+|\\s+$"; "")) | map(select(length > 0)) | unique) as $e
  | ($e | map({(.): true}) | add // {}) as $eset
  | ($e | map(select($s.seen[.] | not))) as $missing
  | ($s.keys | to_entries | sort_by(.key) | from_entries
     | map_values({partition, changes, in_order})) as $keys
  | ([$keys[] | .in_order] | all) as $order_ok
  | {client: "kcat", group: $group, elapsed_s: $elapsed,
     expected: (if $hasexp then ($e | length) else null end),
     received: $s.received, unique: ($s.seen | length), duplicates: $s.duplicates,
     malformed: $s.malformed, fillers: $s.fillers,
     unexpected: (if $hasexp then ($s.seen | keys | map(select($eset[.] | not)) | length)
                  else 0 end),
     missing_count: ($missing | length), missing: $missing[:20],
     order_ok: $order_ok, violations: $s.violations[:20], keys: $keys,
     ok: (($missing | length) == 0 and $order_ok)}'

state=$work/state.json
if ! jq -R -c "$normalize" "$raw" | jq -s -c "$check" >"$state"; then
  echo '{"client":"kcat","msg":"cannot read what kcat printed"}' >&2
  exit 2
fi
if [ -n "$out" ]; then jq -c '.recs[]' "$state" >"$out"; else jq -c '.recs[]' "$state"; fi
exp_text=""
[ -n "$expected" ] && exp_text=$(cat "$expected")
summary=$(jq -c --slurpfile s0 "$state" --arg exp "$exp_text" --arg group "$group" \
  --argjson elapsed "$elapsed" --argjson hasexp "$([ -n "$expected" ] && echo true || echo false)" \
  '$s0[0] as $s | '"$summarize" -n)
[ -n "$stop_signal" ] && summary=$(jq -c --arg sig "$stop_signal" '. + {stopped_by_signal: $sig}' <<<"$summary")
[ -n "$report" ] && echo "$summary" >"$report"
echo "{\"summary\":$summary}" >&2

[ $kcat_failed -eq 1 ] && exit 2
[ "$(jq .missing_count <<<"$summary")" = 0 ] || exit 1
[ "$(jq .order_ok <<<"$summary")" = true ] || exit 3
exit 0
