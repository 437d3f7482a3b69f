// JobService.WatchProgress read by a Node.js client (@grpc/grpc-js, with
// the service loaded from protos/jobline/v2/*.proto by @grpc/proto-loader).
//
// Starts a job_server on a new database and a free port, with a short delay
// step, creates an "unknown" job with a delay of 3 (the server's runner does
// all of its work: three steps of the Delay stage, then FAILURE, as no work
// of its own exists for the type), watches it while it runs, and checks
// every message of the stream: the snapshot, then one message per change
// with its status changes and log lines, and OK after the final status.
// Then resumes and re-opens the finished job's stream. The same checks as
// tests/python/watch_test.py, through another gRPC implementation.
//
//   node watch_test.js RUNFILES_ROOT
//
// The root holds server/job_server, tools/demo-catalog.json and
// protos/jobline/v2/*.proto. The packages come from NODE_PATH (see
// watch_test.sh). Prints one line per case; writes a JUnit XML report to
// $XML_OUTPUT_FILE (one testcase per case) when set, as `bazel test` sets
// it. Exits 0 when every case passed, else 1. Runs on Node.js 18 and later.

'use strict';

const assert = require('assert/strict');
const childProcess = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// google/api/annotations.proto and http.proto, which jobs.proto imports,
// from Debian's golang-github-grpc-ecosystem-grpc-gateway-dev (the copy
// protos/BUILD.bazel compiles). The google/protobuf types come with
// protobuf.js.
const GOOGLEAPIS = '/usr/share/gocode/src/github.com/grpc-ecosystem/' +
    'grpc-gateway/third_party/googleapis';

// How often the Delay stage advances: long enough for the watcher to keep
// up (one message per change), short enough for a quick test. The server
// has one runner thread, so a job enqueued while another one runs starts
// only when that one ends, and no two changes of the watched job come
// closer than one step.
const DELAY_STEP_MS = 250;
// Milliseconds any call or the whole stream may take before the test gives
// up.
const CALL_TIMEOUT_MS = 10000;
const STREAM_TIMEOUT_MS = 60000;

const PROJECT_ID = 16;  // In tools/demo-catalog.json.
const JOB_NAME = 'Watched from Node';

// Moods the runner writes into the Delay stage: before, during, after.
const SLEEPING = '\u{1F634}';
const DIZZY = '\u{1F635}\u200D\u{1F4AB}';
const PARTY = '\u{1F973}';

// "[YYYY-MM-DD HH:MM:SS] LEVEL message", the format of every log line.
const LOG_LINE = new RegExp(
    '^\\[\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\] ' +
    '(DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$');

// [sequence, level, message] of every line the run appends.
function expectedLogs(jobId) {
  return [
    [3, 'INFO', `Running job #${jobId} "${JOB_NAME}" (PENDING)`],
    [3, 'INFO', `Changing status of job ${jobId} from PENDING to STARTED`],
    [4, 'INFO', `Delaying job #${jobId}: 1 of 3 seconds`],
    [5, 'INFO', `Delaying job #${jobId}: 2 of 3 seconds`],
    [6, 'ERROR', 'Job type "unknown" has no work to run'],
    [6, 'INFO', `Changing status of job ${jobId} from STARTED to FAILURE`],
    [6, 'INFO', `Finished job #${jobId} "${JOB_NAME}" (FAILURE)`],
  ];
}

// [level, message] of a log line; throws if it is malformed.
function splitLine(text) {
  const match = LOG_LINE.exec(text);
  assert.ok(match, `malformed log line ${JSON.stringify(text)}`);
  return [match[1], match[2]];
}

// [sequence, level, message] of a stream message's log lines.
function lines(message) {
  return message.logs.map((line) => {
    const [level, text] = splitLine(line.text);
    assert.equal(line.level, level, `level of ${JSON.stringify(line.text)}`);
    return [Number(line.sequence), level, text];
  });
}

// The log lines of a message's document (only a snapshot has them).
function documentLines(message) {
  return message.job.logs === null ? [] : message.job.logs.stdout;
}

// A google.protobuf.Timestamp or Duration in nanoseconds.
function nanos(time) {
  return BigInt(time.seconds) * 1000000000n + BigInt(time.nanos);
}

// ---- The server -------------------------------------------------------------

// A job_server child process on a temporary database and a free port.
class Server {
  constructor(root) {
    const tmpRoot = process.env.TEST_TMPDIR || os.tmpdir();
    this.work = fs.mkdtempSync(path.join(tmpRoot, 'watch-test.'));
    this.outPath = path.join(this.work, 'server.out');
    this.errPath = path.join(this.work, 'server.err');
    const out = fs.openSync(this.outPath, 'w');
    const err = fs.openSync(this.errPath, 'w');
    this.exited = false;
    this.process = childProcess.spawn(
        path.join(root, 'server', 'job_server'),
        [
          `--db=${path.join(this.work, 'jobline.db')}`,
          '--host=127.0.0.1',
          '--grpc_port=0',
          '--http_port=0',
          `--delay_step_ms=${DELAY_STEP_MS}`,
          '--runner_threads=1',
          `--seed_catalog=${path.join(root, 'tools', 'demo-catalog.json')}`,
        ],
        {stdio: ['ignore', out, err]});
    fs.closeSync(out);
    fs.closeSync(err);
    this.startError = null;
    this.exitedPromise = new Promise((resolve) => {
      const exited = () => {
        this.exited = true;
        resolve();
      };
      this.process.on('exit', exited);
      // Not started at all (no such program, say).
      this.process.on('error', (error) => {
        this.startError = error;
        exited();
      });
    });
  }

  // The address from "jobline: serving gRPC on ADDR", within 30 s.
  async address() {
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      const match = /^jobline: serving gRPC on (\S+)/m.exec(
          fs.readFileSync(this.outPath, 'utf8'));
      if (match) return match[1];
      if (this.startError !== null) throw this.startError;
      if (this.exited) {
        throw new Error(`job_server exited at start:\n${this.logTail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('job_server did not serve within 30 s');
  }

  // The last 20 lines of the server's standard error.
  logTail() {
    return fs.readFileSync(this.errPath, 'utf8').split('\n').slice(-21)
        .join('\n');
  }

  // SIGTERM, then SIGKILL after 10 s.
  async stop() {
    if (this.exited) return;
    this.process.kill('SIGTERM');
    const killer = setTimeout(() => this.process.kill('SIGKILL'), 10000);
    await this.exitedPromise;
    clearTimeout(killer);
  }

  // Removes the database and the logs. REQUIRES: stopped.
  remove() {
    fs.rmSync(this.work, {recursive: true, force: true});
  }
}

// ---- The client -------------------------------------------------------------

function loadService(root) {
  const definition = protoLoader.loadSync(['jobline/v2/jobs.proto'], {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [path.join(root, 'protos'), GOOGLEAPIS],
  });
  return grpc.loadPackageDefinition(definition).jobline.v2.JobService;
}

// A unary call of `stub` as a promise.
function call(stub, method, request) {
  return new Promise((resolve, reject) => {
    stub[method](
        request, {deadline: Date.now() + CALL_TIMEOUT_MS},
        (error, response) => error ? reject(error) : resolve(response));
  });
}

// Every message of a WatchProgress stream, its status code and details.
// `onMessage(message, index, stream)` runs on each message as it arrives.
function watch(stub, request, onMessage = () => {}) {
  return new Promise((resolve) => {
    const stream = stub.WatchProgress(
        request, {deadline: Date.now() + STREAM_TIMEOUT_MS});
    const messages = [];
    let status = null;
    let ended = false;
    const settle = () => {
      if (status !== null && ended) {
        resolve({messages, code: status.code, details: status.details});
      }
    };
    stream.on('data', (message) => {
      messages.push(message);
      onMessage(message, messages.length - 1, stream);
    });
    stream.on('end', () => {
      ended = true;
      settle();
    });
    stream.on('error', () => {
      ended = true;
      settle();
    });
    stream.on('status', (received) => {
      status = received;
      settle();
    });
  });
}

// ---- The cases --------------------------------------------------------------

const cases = [];
function test(name, body) {
  cases.push({name, body});
}

// Starts a job that holds the only runner thread for four steps, and
// resolves once it runs.
async function occupyTheRunner(stub) {
  const blocker = await call(stub, 'CreateJob', {
    job: {
      name: 'Keeps the runner busy',
      delay: 4,
      project_id: PROJECT_ID,
      job_type_key: 'unknown',
    },
    start_now: true,
  });
  let running = false;
  await watch(stub, {job_id: blocker.id}, (message, _, stream) => {
    if (message.job.status === 'STARTED' && !running) {
      running = true;
      stream.cancel();
    }
  });
  assert.ok(running, `job ${blocker.id} ended without running`);
}

// Shared by the cases: filled by setUp().
const run = {stub: null, jobId: 0, messages: [], code: -1};

async function setUp(root, server) {
  const JobService = loadService(root);
  run.stub = new JobService(
      await server.address(), grpc.credentials.createInsecure());
  const job = await call(run.stub, 'CreateJob', {
    job: {
      name: JOB_NAME,
      delay: 3,
      project_id: PROJECT_ID,
      job_type_key: 'unknown',
    },
  });
  run.jobId = Number(job.id);

  // The job is enqueued only once the snapshot has arrived, so the stream
  // sees every status from CREATED on, and while the runner is busy, so it
  // starts a step or more after PENDING.
  await occupyTheRunner(run.stub);
  let enqueued = null;
  const watched = await watch(run.stub, {job_id: run.jobId}, (_, index) => {
    if (index === 0) enqueued = call(run.stub, 'RunJob', {id: run.jobId});
  });
  assert.ok(enqueued !== null, 'the stream sent no message');
  await enqueued;
  run.messages = watched.messages;
  run.code = watched.code;
}

test('first message is a snapshot of the created job', () => {
  const first = run.messages[0];
  assert.equal(first.snapshot, true);
  assert.equal(first.sequence, 1);
  assert.equal(first.job.id, run.jobId);
  assert.equal(first.job.name, JOB_NAME);
  assert.equal(first.job.status, 'CREATED');
  assert.equal(first.job.job_type.key, 'unknown');
  assert.equal(first.job.delay, 3);
  assert.deepEqual(first.job.logs.stdout, []);
  assert.deepEqual(first.status_changes, []);
  assert.deepEqual(first.logs, []);
  assert.deepEqual(
      run.messages.slice(1).map((m) => m.snapshot), Array(5).fill(false));
});

test('one message per change, sequences up by one', () => {
  assert.deepEqual(run.messages.map((m) => m.sequence), [1, 2, 3, 4, 5, 6]);
  for (const message of run.messages) {
    assert.equal(message.job.sequence, message.sequence);
    const carried = new Set([
      ...message.status_changes.map((c) => c.sequence),
      ...message.logs.map((line) => line.sequence),
    ]);
    assert.deepEqual(
        [...carried], message.snapshot ? [] : [message.sequence],
        `sequences carried by message ${message.sequence}`);
  }
});

test('status changes in order', () => {
  assert.deepEqual(run.messages.map((m) => m.job.status), [
    'CREATED', 'PENDING', 'STARTED', 'STARTED', 'STARTED', 'FAILURE',
  ]);
  const changes = [];
  for (const message of run.messages) {
    for (const change of message.status_changes) {
      changes.push([change.sequence, change.status]);
      assert.deepEqual(change.changed_at, message.job.updated_at);
    }
  }
  assert.deepEqual(changes, [[2, 'PENDING'], [3, 'STARTED'], [6, 'FAILURE']]);
});

test('delay stage steps', () => {
  const params = (mood) => [
    ['Delay', 'delay', 'default', 3],
    ['Mood', 'mood', 'default', mood],
  ];
  const stages = run.messages.map((message) => {
    assert.equal(message.job.progress.stages.length, 1);
    const stage = message.job.progress.stages[0];
    assert.deepEqual([stage.key, stage.name], ['delay', 'Delay']);
    return [
      stage.status,
      stage.progress,
      stage.status_label,
      stage.params.map(
          (p) => [p.name, p.key, p.category, p.value[p.value.kind]]),
    ];
  });
  assert.deepEqual(stages, [
    ['CREATED', 0, 'Waiting to start', params(SLEEPING)],
    ['CREATED', 0, 'Waiting to start', params(SLEEPING)],
    ['CREATED', 0, 'Waiting to start', params(SLEEPING)],
    ['STARTED', 1 / 3, '33% complete', params(DIZZY)],
    ['STARTED', 2 / 3, '66% complete', params(DIZZY)],
    ['SUCCESS', 1, '100% complete', params(PARTY)],
  ]);
  assert.deepEqual(
      run.messages.map(
          (m) => m.job.progress.stages[0].params.map((p) => p.value.kind)),
      Array(6).fill(['numberValue', 'stringValue']));
});

test('summary follows status and stage', () => {
  assert.deepEqual(
      run.messages.map((m) => {
        const summary = m.job.progress.summary;
        return [summary.status, summary.progress, summary.status_label];
      }),
      [
        ['CREATED', 0, 'Waiting to start'],
        ['PENDING', 0, 'Waiting to start'],
        ['STARTED', 0, '0% complete'],
        ['STARTED', 1 / 3, '33% complete'],
        ['STARTED', 2 / 3, '66% complete'],
        ['FAILURE', 1, 'FAILURE'],
      ]);
});

test('log lines in order', () => {
  assert.deepEqual(run.messages.flatMap(lines), expectedLogs(run.jobId));
  // Documents after the snapshot carry no lines of their own.
  for (const message of run.messages.slice(1)) {
    assert.deepEqual(documentLines(message), []);
  }
});

test('ends OK after the final status', () => {
  assert.equal(run.code, grpc.status.OK);
  const last = run.messages[run.messages.length - 1].job;
  assert.equal(last.status, 'FAILURE');
  assert.ok(last.started_at !== null && last.finished_at !== null);
  assert.equal(
      nanos(last.finished_at) - nanos(last.started_at), nanos(last.duration));
  // Not before: started_at appears with STARTED, finished_at last.
  assert.deepEqual(
      run.messages.map((m) => m.job.started_at !== null),
      [false, false, true, true, true, true]);
  assert.deepEqual(
      run.messages.map((m) => m.job.finished_at !== null),
      [false, false, false, false, false, true]);
});

test('resume gives exactly what was missed', async () => {
  const {messages, code} =
      await watch(run.stub, {job_id: run.jobId, after_sequence: 3});
  assert.equal(code, grpc.status.OK);
  assert.equal(messages.length, 1);
  const [resumed] = messages;
  assert.equal(resumed.snapshot, false);
  assert.equal(resumed.sequence, 6);
  assert.equal(resumed.job.status, 'FAILURE');
  assert.deepEqual(
      resumed.status_changes.map((c) => [c.sequence, c.status]),
      [[6, 'FAILURE']]);
  assert.deepEqual(lines(resumed), expectedLogs(run.jobId).slice(2));
});

test('finished job gives one snapshot', async () => {
  const {messages, code} =
      await watch(run.stub, {job_id: run.jobId, logs_limit: 3});
  assert.equal(code, grpc.status.OK);
  assert.equal(messages.length, 1);
  const [snapshot] = messages;
  assert.equal(snapshot.snapshot, true);
  assert.equal(snapshot.sequence, 6);
  assert.equal(snapshot.job.status, 'FAILURE');
  // The newest three lines, newest first.
  assert.deepEqual(
      snapshot.job.logs.stdout.map(splitLine),
      expectedLogs(run.jobId).slice(4).reverse().map((l) => l.slice(1)));
  assert.deepEqual(
      snapshot.job.logs.stderr, ['Job type "unknown" has no work to run']);
});

test('unknown job is NOT_FOUND', async () => {
  const {messages, code, details} = await watch(run.stub, {job_id: 987654});
  assert.deepEqual(messages, []);
  assert.equal(code, grpc.status.NOT_FOUND);
  assert.equal(details, 'job 987654 not found');
});

test('bad logs_limit names the field', async () => {
  const job = await call(run.stub, 'CreateJob', {
    job: {name: 'Never watched', project_id: PROJECT_ID},
  });
  const {messages, code, details} =
      await watch(run.stub, {job_id: job.id, logs_limit: 5001});
  assert.deepEqual(messages, []);
  assert.equal(code, grpc.status.INVALID_ARGUMENT);
  assert.equal(
      details, 'logs_limit: Ensure this value is between 1 and 5000.');
});

// ---- Running and reporting --------------------------------------------------

function xmlEscape(text) {
  return String(text).replace(/[<>&"]/g, (c) => ({
    '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;',
  })[c]);
}

// Writes `records` ({name, seconds, error}) as a JUnit XML report.
function writeReport(file, records) {
  const failures = records.filter((r) => r.error !== null).length;
  const body = records.map((r) => {
    const open = `    <testcase classname="watch_test" ` +
        `name="${xmlEscape(r.name)}" time="${r.seconds.toFixed(3)}"`;
    if (r.error === null) return `${open} />`;
    return `${open}>\n      <failure message="failure">` +
        `${xmlEscape(r.error)}</failure>\n    </testcase>`;
  });
  fs.writeFileSync(file, [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<testsuites>',
    `  <testsuite name="watch_test" tests="${records.length}" ` +
        `failures="${failures}" errors="0">`,
    ...body,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n'));
}

function describe(error) {
  return error && error.stack ? error.stack : String(error);
}

async function main(argv) {
  if (argv.length !== 1) {
    process.stderr.write('usage: node watch_test.js RUNFILES_ROOT\n');
    return 2;
  }
  const root = argv[0];
  console.log(`node ${process.version}, @grpc/grpc-js ` +
              require('@grpc/grpc-js/package.json').version);
  let server = null;
  const records = [];
  try {
    // A failed setup fails every case, with its reason.
    let setupError = null;
    try {
      server = new Server(root);
      await setUp(root, server);
    } catch (error) {
      setupError = `setup failed: ${describe(error)}`;
    }
    for (const {name, body} of cases) {
      const began = process.hrtime.bigint();
      let error = setupError;
      if (error === null) {
        try {
          await body();
        } catch (thrown) {
          error = describe(thrown);
        }
      }
      const seconds = Number(process.hrtime.bigint() - began) / 1e9;
      records.push({name, seconds, error});
      console.log(`${error === null ? 'ok  ' : 'FAIL'} ${name}`);
      // The reason of a failed setup is shown once.
      if (error !== null && (error !== setupError || records.length === 1)) {
        console.log(error.replace(/^/gm, '    '));
      }
    }
  } finally {
    if (run.stub !== null) run.stub.close();
    if (server !== null) await server.stop();
  }
  const failed = records.filter((r) => r.error !== null).length;
  if (server !== null) {
    if (failed > 0) {
      console.log(`last lines of the server's log:\n${server.logTail()}`);
    }
    server.remove();
  }
  if (process.env.XML_OUTPUT_FILE) {
    writeReport(process.env.XML_OUTPUT_FILE, records);
  }
  console.log(`${records.length - failed} of ${records.length} cases passed`);
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
    (code) => process.exit(code), (error) => {
      console.error(describe(error));
      process.exit(1);
    });
