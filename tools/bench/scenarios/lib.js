// Shared by every bench scenario: options (warm-up, then the measured phase), the seeded data,
// one gRPC connection per VU, result bookkeeping and the summary file the runner reads.
//
// Environment (set by tools/bench/run.py):
//   BENCH_DATA      JSON written by tools/bench/seed.py (tokens, accounts, addresses)
//   BENCH_PROTOSET  generated/emoney.binpb (a FileDescriptorSet with every import)
//   BENCH_SUMMARY   where handleSummary writes its JSON
//   BENCH_EXECUTOR  "max" (constant VUs, as fast as they go) or "rate" (constant arrival rate)
//   BENCH_VUS, BENCH_RATE, BENCH_WARMUP_S, BENCH_DURATION_S, BENCH_RUN (unique per run: request ids)
import exec from 'k6/execution';
import grpc from 'k6/net/grpc';
import { Counter } from 'k6/metrics';

export const DATA = JSON.parse(open(__ENV.BENCH_DATA));
const VUS = parseInt(__ENV.BENCH_VUS || '16', 10);
const RATE = parseInt(__ENV.BENCH_RATE || '100', 10);
const WARMUP_S = parseFloat(__ENV.BENCH_WARMUP_S || '1');
const DURATION_S = parseFloat(__ENV.BENCH_DURATION_S || '2');
const RUN = __ENV.BENCH_RUN || 'run';
// The gap between warm-up and measured phase: warm-up's in-flight calls get this long to finish, then
// are cut (their errors do not count). The measured phase lets its in-flight calls finish
// (MEASURED_GRACE); only calls completed within its duration count towards the throughput.
const GAP_S = 0.5;
const MEASURED_GRACE = '30s';
export const MEASURED_START_S = WARMUP_S + GAP_S;

const ok = new Counter('bench_ok');
const late = new Counter('bench_late'); // succeeded after the measured phase's end (in its grace time)
const errors = new Counter('bench_errors');

function phase(executor, durationS, startS, gracefulStop, tags) {
  const common = { exec: 'iteration', startTime: `${startS}s`, gracefulStop, tags };
  if (executor === 'rate') {
    return Object.assign(common, {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: `${durationS}s`,
      preAllocatedVUs: VUS, maxVUs: VUS * 4,
    });
  }
  return Object.assign(common, { executor: 'constant-vus', vus: VUS, duration: `${durationS}s` });
}

// `trend` is the built-in duration metric of the calls the row is about: grpc_req_duration or
// http_req_duration. Calls tagged op=main are the ones measured; op=setup calls (a payment code the
// customer makes before the terminal charges it) are measured separately.
export function options(trend) {
  const executor = __ENV.BENCH_EXECUTOR || 'max';
  const measured = '{scenario:measured}';
  const thresholds = {};
  // A threshold on a tag-filtered submetric is what makes k6 keep that submetric for the summary;
  // these always pass: the bench reports figures, it does not judge them.
  for (const name of [
    `${trend}{scenario:measured,op:main}`, `${trend}{scenario:measured,op:setup}`,
    `bench_ok${measured}`, `bench_errors${measured}`, `bench_ok{scenario:measured,op:main}`,
    `bench_errors{scenario:measured,op:main}`, `bench_late{scenario:measured,op:main}`, `dropped_iterations${measured}`,
    `iterations${measured}`,
  ]) {
    thresholds[name] = name.startsWith(trend) ? ['max>=0'] : ['count>=0'];
  }
  return {
    scenarios: {
      warmup: phase(executor, WARMUP_S, 0, `${GAP_S}s`, { phase: 'warmup' }),
      measured: phase(executor, DURATION_S, MEASURED_START_S, MEASURED_GRACE, { phase: 'measured' }),
    },
    thresholds,
    summaryTrendStats: ['count', 'avg', 'min', 'med', 'max', 'p(50)', 'p(95)', 'p(99)'],
    setupTimeout: '60s',
    teardownTimeout: '60s',
    noConnectionReuse: false,
    discardResponseBodies: false,
  };
}

// A unique request id per call: run, scenario phase, VU and its iteration (at most 64 characters).
export function requestId(kind) {
  return `${RUN}-${kind}-${exec.scenario.name[0]}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
}

export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

export function pickTwo(list) {
  const first = Math.floor(Math.random() * list.length);
  let second = Math.floor(Math.random() * (list.length - 1));
  if (second >= first) second += 1;
  return [list[first], list[second]];
}

// One native gRPC connection per VU, opened on its first iteration (connect cannot run in init).
export function grpcClient(address) {
  const client = new grpc.Client();
  client.loadProtoset(__ENV.BENCH_PROTOSET);
  let connected = false;
  return {
    invoke(method, request, token, op) {
      if (!connected) {
        client.connect(address, { plaintext: true, timeout: '10s' });
        connected = true;
      }
      const params = { tags: { op: op || 'main' }, timeout: '30s' };
      if (token) params.metadata = { authorization: `Bearer ${token}` };
      let response;
      try {
        response = client.invoke(method, request, params);
      } catch (error) {
        return fail(op, `${method}: ${error}`);
      }
      if (response.status !== grpc.StatusOK) {
        const message = response.error ? response.error.message : '';
        return fail(op, `${method}: status ${response.status} ${message}`);
      }
      return succeed(op, response.message);
    },
  };
}

let errorsLogged = 0;

export function fail(op, what) {
  errors.add(1, { op: op || 'main' });
  if (exec.scenario.name === 'measured' && errorsLogged < 3) {
    errorsLogged += 1;
    console.error(`bench error (${exec.scenario.name}): ${what}`);
  }
  return null;
}

export function succeed(op, value) {
  const inTime = exec.scenario.name !== 'measured' || Date.now() <= exec.scenario.startTime + DURATION_S * 1000;
  (inTime ? ok : late).add(1, { op: op || 'main' });
  return value;
}

export function summary(data) {
  const out = {
    wall_clock_ms: Date.now(),
    test_run_duration_ms: data.state.testRunDurationMs,
    measured_start_s: MEASURED_START_S,
    warmup_s: WARMUP_S,
    duration_s: DURATION_S,
    metrics: {},
  };
  for (const [name, metric] of Object.entries(data.metrics)) {
    out.metrics[name] = metric.values;
  }
  return { [__ENV.BENCH_SUMMARY]: JSON.stringify(out, null, 1) };
}
