// 4. Hot merchant: many customers pay the same merchant account at once (CreateTransfer
// customer -> merchant, 1 minor unit each), native gRPC through Envoy.
import { DATA, grpcClient, options as buildOptions, pick, requestId, summary } from './lib.js';

const client = grpcClient(DATA.envoy);

export const options = buildOptions('grpc_req_duration');

export function iteration() {
  const payer = pick(DATA.accounts);
  client.invoke('emoney.payments.v1.PaymentsService/CreateTransfer', {
    request_id: requestId('hot'), from_account: payer.account, to_account: DATA.merchant_account,
    amount_minor: 1, currency: DATA.currency,
  }, payer.token);
}

export const handleSummary = summary;
