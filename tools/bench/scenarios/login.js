// 7. Logins: AuthService.Login with e-mail and password, bound by Argon2id (19 MiB, t=2) on the server.
import { DATA, grpcClient, options as buildOptions, pick, summary } from './lib.js';

const client = grpcClient(DATA.envoy);

export const options = buildOptions('grpc_req_duration');

export function iteration() {
  const person = pick(DATA.customers);
  client.invoke('emoney.auth.v1.AuthService/Login', {
    tenant: DATA.tenant, email: person.email, password: DATA.password,
  }, null);
}

export const handleSummary = summary;
