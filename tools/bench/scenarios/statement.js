// 6. Statement reads: a customer lists the latest 20 entries of their account (ListAccountEntries).
import { DATA, grpcClient, options as buildOptions, pick, summary } from './lib.js';

const client = grpcClient(DATA.envoy);

export const options = buildOptions('grpc_req_duration');

export function iteration() {
  const holder = pick(DATA.accounts);
  client.invoke('emoney.accounts.v1.AccountsService/ListAccountEntries', {
    account: holder.account, page_size: 20,
  }, holder.token);
}

export const handleSummary = summary;
