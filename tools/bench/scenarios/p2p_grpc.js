// 2. P2P transfers spread over many accounts: a random customer sends 1 minor unit to another random
// customer, native gRPC through Envoy. Every transfer has its own request_id. BENCH_TARGET=bare sends the
// same calls to the bare reference servers (tools/bench/bare_server.py) through their Envoy.
import { DATA, grpcClient, options as buildOptions, pickTwo, requestId, summary } from './lib.js';

const client = grpcClient(__ENV.BENCH_TARGET === 'bare' ? DATA.bare : DATA.envoy);

export const options = buildOptions('grpc_req_duration');

export function iteration() {
  const [from, to] = pickTwo(DATA.accounts);
  client.invoke('emoney.payments.v1.PaymentsService/CreateTransfer', {
    request_id: requestId('p2p'), from_account: from.account, to_account: to.account,
    amount_minor: 1, currency: DATA.currency,
  }, from.token);
}

export const handleSummary = summary;
