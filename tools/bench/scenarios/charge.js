// 5. Terminal charges: codes are single use, so each iteration makes two calls: the customer
// creates a payment code (CreatePaymentCode, tagged op=setup, reported apart), then the merchant's
// terminal charges 1 minor unit with it (ChargePaymentCode, op=main: the row's latency and rate).
import { DATA, grpcClient, options as buildOptions, pick, requestId, summary } from './lib.js';

const client = grpcClient(DATA.envoy);

export const options = buildOptions('grpc_req_duration');

export function iteration() {
  const payer = pick(DATA.accounts);
  const code = client.invoke('emoney.payments.v1.PaymentsService/CreatePaymentCode', {
    account: payer.account, max_amount_minor: 100, currency: DATA.currency,
  }, payer.token, 'setup');
  if (code === null) return;
  client.invoke('emoney.payments.v1.PaymentsService/ChargePaymentCode', {
    request_id: requestId('charge'), code: code.code, amount_minor: 1, currency: DATA.currency,
  }, DATA.terminal_token);
}

export const handleSummary = summary;
