// 3. The same P2P transfers through JSON over HTTP (Envoy transcodes to gRPC): POST /v1/transfers.
import http from 'k6/http';
import { DATA, fail, options as buildOptions, pickTwo, requestId, succeed, summary } from './lib.js';

const url = `http://${DATA.envoy}/v1/transfers`;

export const options = buildOptions('http_req_duration');

export function iteration() {
  const [from, to] = pickTwo(DATA.accounts);
  const body = JSON.stringify({
    requestId: requestId('json'), fromAccount: from.account, toAccount: to.account,
    amountMinor: '1', currency: DATA.currency,
  });
  const response = http.post(url, body, {
    headers: { 'content-type': 'application/json', authorization: `Bearer ${from.token}` },
    tags: { op: 'main' },
    timeout: '30s',
  });
  if (response.status === 200) {
    succeed('main');
  } else {
    fail('main', `POST /v1/transfers: HTTP ${response.status} ${String(response.body).slice(0, 200)}`);
  }
}

export const handleSummary = summary;
