// 1. Baseline: PlatformService.GetServerInfo, public (no token), touches no database (the rate
// limiter's one Redis call per request still runs). BENCH_TARGET=direct calls one server directly,
// BENCH_TARGET=bare the bare reference servers through their Envoy (tools/bench/references.py),
// otherwise native gRPC through Envoy.
import { DATA, grpcClient, options as buildOptions, summary } from './lib.js';

const TARGETS = { direct: DATA.direct, bare: DATA.bare, envoy: DATA.envoy };
const client = grpcClient(TARGETS[__ENV.BENCH_TARGET] || DATA.envoy);

export const options = buildOptions('grpc_req_duration');

export function iteration() {
  client.invoke('emoney.platform.v1.PlatformService/GetServerInfo', {}, null);
}

export const handleSummary = summary;
