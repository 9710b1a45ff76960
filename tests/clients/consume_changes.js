#!/usr/bin/env node
// Consume diary.changes in a consumer group with kafkajs (pure JavaScript, no librdkafka) and
// check it.
//
// A third-party client reading the change stream the way a downstream service would
// (docs/consumers.md): it joins a consumer group, starts at the earliest offset when the group
// has no committed offset (fromBeginning), lets kafkajs commit the offsets of messages whose
// handler has returned (at least once), de-duplicates on the change `id`, and checks that each
// key's (user's) changes arrive from one partition in increasing offset order.
//
//   node consume_changes.js --bootstrap HOST:PORT[,...] [--group G] [--topic diary.changes]
//       [--expected FILE] [--deadline 60] [--out FILE] [--report FILE] [--quiet]
//
// One JSON line per change received goes to --out (default stdout):
//   {"client","id","key","partition","offset","event_id","dup"}
// A summary (one JSON object) goes to --report, and always as the last line of stderr.
//
// It stops once it has seen every id of --expected (one change id per line), or at the
// deadline. Exit status: 0 every expected id was seen and every key was in order (without
// --expected: the deadline passed and every key was in order); 1 an expected id is missing at
// the deadline; 3 every id was seen but some key's changes were out of order or on two
// partitions; 2 bad arguments or a fatal client error.
//
// Needs `npm ci` in this folder first (kafkajs is pinned in package-lock.json).
'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const CLIENT = 'kafkajs';

function log(msg, fields = {}) {
  process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), client: CLIENT, msg, ...fields }) + '\n');
}

function parseArgs(argv) {
  const args = { group: 'diary-changes-kafkajs', topic: 'diary.changes', deadline: 60, quiet: false };
  const valued = new Set(['--bootstrap', '--group', '--topic', '--expected', '--deadline', '--out', '--report']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quiet') {
      args.quiet = true;
    } else if (valued.has(a) && i + 1 < argv.length) {
      args[a.slice(2)] = argv[++i];
    } else {
      throw new Error(`unknown or incomplete argument: ${a}`);
    }
  }
  if (!args.bootstrap) throw new Error('--bootstrap is required');
  args.deadline = Number(args.deadline);
  if (!(args.deadline > 0)) throw new Error('--deadline must be a positive number of seconds');
  return args;
}

// De-duplication on the change id and the per-key order check (docs/consumers.md).
class Checker {
  constructor(expected) {
    this.expected = expected; // a Set, or null to run until the deadline
    this.seen = new Set();
    this.keys = new Map(); // key -> {partition, lastOffset, changes, inOrder}
    this.received = 0;
    this.duplicates = 0;
    this.malformed = 0;
    this.fillers = 0;
    this.violations = [];
  }

  missing() {
    return this.expected === null ? [] : [...this.expected].filter((id) => !this.seen.has(id));
  }

  done() {
    if (this.expected === null || this.seen.size < this.expected.size) return false;
    for (const id of this.expected) if (!this.seen.has(id)) return false;
    return true;
  }

  // [docs:js-handle]
  handle(key, partition, offset, value) {
    const change = JSON.parse(value.toString('utf8'));
    const id = change.id;
    const eventId = change.data.source.event_id;
    if (typeof id !== 'string') throw new TypeError('no change id');
    const dup = this.seen.has(id); // at least once: a re-delivered change is skipped
    if (!dup) {
      this.seen.add(id);
      if (!this.keys.has(key)) this.keys.set(key, { partition, lastOffset: -1, changes: 0, inOrder: true });
      const k = this.keys.get(key);
      // One user's changes live on one partition, in increasing offsets.
      if (k.partition !== partition || offset <= k.lastOffset) {
        k.inOrder = false;
        this.violations.push({ key, partition, offset, after_partition: k.partition, after_offset: k.lastOffset });
      } else {
        k.lastOffset = offset;
      }
      k.changes++;
    }
    return { client: CLIENT, id, key, partition, offset, event_id: eventId, dup };
  }
  // [/docs:js-handle]

  summary(group, elapsed) {
    const missing = this.missing().sort();
    const keys = {};
    let orderOk = true;
    for (const k of [...this.keys.keys()].sort()) {
      const v = this.keys.get(k);
      keys[k] = { partition: v.partition, changes: v.changes, in_order: v.inOrder };
      orderOk = orderOk && v.inOrder;
    }
    let unexpected = 0;
    if (this.expected) for (const id of this.seen) if (!this.expected.has(id)) unexpected++;
    return {
      client: CLIENT, group, elapsed_s: Math.round(elapsed * 1000) / 1000,
      expected: this.expected ? this.expected.size : null,
      received: this.received, unique: this.seen.size, duplicates: this.duplicates,
      malformed: this.malformed, fillers: this.fillers, unexpected,
      missing_count: missing.length, missing: missing.slice(0, 20),
      order_ok: orderOk, violations: this.violations.slice(0, 20), keys,
      ok: missing.length === 0 && orderOk,
    };
  }
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    log('bad arguments', { error: e.message });
    return 2;
  }
  let expected = null;
  if (args.expected) {
    try {
      expected = new Set(fs.readFileSync(args.expected, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean));
    } catch (e) {
      log('cannot read the expected ids', { error: e.message });
      return 2;
    }
  }
  const out = args.out ? fs.createWriteStream(args.out) : process.stdout;
  const checker = new Checker(expected);
  const start = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;

  // Resolved once every expected id was seen, at the deadline or on a signal. The consumer is
  // stopped from main, never from inside eachMessage (kafkajs waits for the running handler).
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const timer = setTimeout(() => finish('deadline'), args.deadline * 1000);
  process.once('SIGTERM', () => finish('SIGTERM'));
  process.once('SIGINT', () => finish('SIGINT'));

  // kafkajs' own log lines, as JSON on stderr; warnings and errors only unless asked.
  const logCreator = () => ({ namespace, level, label, log: entry }) => {
    if (args.quiet && level > logLevel.ERROR) return;
    const { message, ...rest } = entry;
    process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), client: CLIENT, level: label, namespace, msg: message, ...rest }) + '\n');
  };

  // [docs:js-consumer]
  const kafka = new Kafka({
    clientId: args.group,
    brokers: args.bootstrap.split(','),
    logLevel: logLevel.WARN,
    logCreator,
  });
  const consumer = kafka.consumer({
    groupId: args.group,
    maxWaitTimeInMs: 100, // the devbroker answers empty fetches only after this wait
    sessionTimeout: 6000, // a group left behind is free again sooner
    heartbeatInterval: 1000,
  });
  // [/docs:js-consumer]

  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const assigned = (e.payload.memberAssignment[args.topic] || []).slice().sort((a, b) => a - b);
    log('assigned', { partitions: assigned });
  });
  consumer.on(consumer.events.CRASH, (e) => {
    log('consumer crashed', { error: String(e.payload.error), restart: e.payload.restart });
    if (!e.payload.restart) finish('crash');
  });

  // connect() and run() only return once the broker answered and the group was joined; they
  // retry meanwhile, so they race the deadline instead of being awaited here.
  const startConsumer = async () => {
    // [docs:js-run]
    await consumer.connect();
    await consumer.subscribe({ topics: [args.topic], fromBeginning: true });
    await consumer.run({
      autoCommit: true, // kafkajs commits an offset only after eachMessage returned for it
      eachMessage: async ({ partition, message }) => {
        if (message.headers && message.headers['devbroker-filler'] !== undefined) {
          checker.fillers++; // devbroker restore padding, not a change
          return;
        }
        checker.received++;
        const key = message.key === null ? null : message.key.toString('utf8');
        let rec;
        try {
          rec = checker.handle(key, partition, Number(message.offset), message.value);
        } catch (e) {
          checker.malformed++;
          log('not a change event', { partition, offset: message.offset, error: e.message });
          return;
        }
        if (rec.dup) checker.duplicates++;
        out.write(JSON.stringify(rec) + '\n');
        if (checker.done()) finish('all seen');
      },
    });
    // [/docs:js-run]
  };
  startConsumer().catch((e) => {
    log('cannot start the consumer', { error: String(e) });
    finish('crash');
  });
  if (checker.done()) finish('all seen'); // an empty expected set

  const why = await finished;
  clearTimeout(timer);
  log('stopping', { reason: why });
  // disconnect() commits the resolved offsets and leaves the group; bounded, as the broker may
  // be gone.
  let waited;
  await Promise.race([
    consumer.disconnect().catch((e) => log('disconnect failed', { error: e.message })),
    new Promise((resolve) => { waited = setTimeout(() => { log('disconnect timed out'); resolve(); }, 10000); }),
  ]);
  clearTimeout(waited);
  if (out !== process.stdout) await new Promise((resolve) => out.end(resolve));

  const summary = checker.summary(args.group, elapsed());
  summary.stopped_by = why;
  if (args.report) fs.writeFileSync(args.report, JSON.stringify(summary) + '\n');
  process.stderr.write(JSON.stringify({ summary }) + '\n');
  if (why === 'crash') return 2;
  if (summary.missing_count) return 1;
  if (!summary.order_ok) return 3;
  return 0;
}

// Exit once the output is written; kafkajs' retry timers or sockets to a broker that went away
// must not keep the process alive past that.
function exitSoon(code) {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}

main().then(exitSoon, (e) => {
  log('fatal client error', { error: String(e && e.stack ? e.stack : e) });
  exitSoon(2);
});
