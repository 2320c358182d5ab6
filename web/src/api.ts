// The API clients (grpc-web through Envoy, same origin) and the signed-in session.
//
// Tokens live in memory and in sessionStorage (this tab only, gone when it closes), never in
// localStorage or cookies. Before each call the access token is refreshed when it is about to expire;
// a call refused with UNAUTHENTICATED is retried once after a refresh. Refresh tokens are single use,
// so only one refresh is ever in flight.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AccountsService } from "../../generated/ts/emoney/accounts/v1/accounts_pb";
import { AdminService } from "../../generated/ts/emoney/admin/v1/admin_pb";
import { AuthService, Role, type Tokens, type User } from "../../generated/ts/emoney/auth/v1/auth_pb";
import { PaymentsService } from "../../generated/ts/emoney/payments/v1/payments_pb";
import { t } from "./i18n";

const STORAGE_KEY = "emoney.back-office.session";
const REFRESH_MARGIN_MS = 30_000;
/** Methods that need no token (interceptors/access_policy.py: PUBLIC_METHODS). */
const PUBLIC_METHODS = new Set(["GetTenant", "Login", "SignUp", "LoginTerminal", "RefreshToken"]);
export const BACK_OFFICE_ROLES: readonly Role[] = [Role.OPERATOR, Role.TENANT_ADMIN];

export interface Session {
  tenant: string; // tenants/{slug}
  accessToken: string;
  accessExpiresAtMs: number;
  refreshToken: string;
  user: { name: string; email: string; displayName: string; roles: Role[] };
}

let session: Session | null = loadSession();
let refreshing: Promise<void> | null = null;
const signedOutListeners: ((reason: string) => void)[] = [];

function loadSession(): Session | null {
  try {
    const text = sessionStorage.getItem(STORAGE_KEY);
    return text ? (JSON.parse(text) as Session) : null;
  } catch {
    return null;
  }
}

function saveSession(next: Session | null): void {
  session = next;
  if (next) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(STORAGE_KEY);
}

export function currentSession(): Session | null {
  return session;
}

export function onSignedOut(listener: (reason: string) => void): void {
  signedOutListeners.push(listener);
}

function endSession(reason: string): void {
  saveSession(null);
  for (const listener of signedOutListeners) listener(reason);
}

function withTokens(base: Omit<Session, "accessToken" | "accessExpiresAtMs" | "refreshToken">, tokens: Tokens): Session {
  return {
    ...base,
    accessToken: tokens.accessToken,
    accessExpiresAtMs: tokens.accessTokenExpireTime ? timestampMs(tokens.accessTokenExpireTime) : Date.now() + 60_000,
    refreshToken: tokens.refreshToken,
  };
}

async function refresh(): Promise<void> {
  if (!refreshing) {
    const stale = session;
    refreshing = (async () => {
      if (!stale) throw new ConnectError("not signed in", Code.Unauthenticated);
      try {
        const { tokens } = await auth.refreshToken({ refreshToken: stale.refreshToken });
        if (!tokens) throw new ConnectError("no tokens in the answer", Code.Internal);
        saveSession(withTokens(stale, tokens));
      } catch (error) {
        endSession(t().session.ended);
        throw error;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

const authentication: Interceptor = (next) => async (request) => {
  // Public methods, and calls that bring their own token (signing out), go as they are.
  if (PUBLIC_METHODS.has(request.method.name) || request.header.has("authorization")) return next(request);
  if (session && session.accessExpiresAtMs - Date.now() < REFRESH_MARGIN_MS) await refresh();
  if (!session) throw new ConnectError("not signed in", Code.Unauthenticated);
  request.header.set("authorization", `Bearer ${session.accessToken}`);
  try {
    return await next(request);
  } catch (error) {
    // A unary call whose token died in between (revoked key, clock skew): refresh once and retry.
    if (request.stream || ConnectError.from(error).code !== Code.Unauthenticated) throw error;
    await refresh();
    request.header.set("authorization", `Bearer ${session!.accessToken}`);
    return next(request);
  }
};

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  useBinaryFormat: true,
  interceptors: [authentication],
  defaultTimeoutMs: 15_000,
});

export const auth = createClient(AuthService, transport);
export const accounts = createClient(AccountsService, transport);
export const payments = createClient(PaymentsService, transport);
export const admin = createClient(AdminService, transport);

export class NotBackOfficeError extends Error {}

export async function signIn(tenantSlug: string, email: string, password: string): Promise<void> {
  const tenant = `tenants/${tenantSlug.trim().toLowerCase()}`;
  const response = await auth.login({ tenant, email: email.trim(), password });
  const user: User | undefined = response.user;
  if (!response.tokens || !user) throw new ConnectError("no tokens in the answer", Code.Internal);
  const base = {
    tenant,
    user: { name: user.name, email: user.email, displayName: user.displayName, roles: [...user.roles] },
  };
  saveSession(withTokens(base, response.tokens));
  if (!user.roles.some((role) => BACK_OFFICE_ROLES.includes(role))) {
    await signOut();
    throw new NotBackOfficeError(t().session.notBackOffice);
  }
}

export async function signOut(): Promise<void> {
  const ending = session;
  saveSession(null);
  if (ending) {
    try {
      await auth.logout(
        { refreshToken: ending.refreshToken },
        { headers: { authorization: `Bearer ${ending.accessToken}` } },
      );
    } catch {
      // Signed out here either way; the tokens expire by themselves.
    }
  }
}

/** A fresh idempotency key (AIP-155) for one money-moving form; crypto.randomUUID needs a secure context. */
export function newRequestId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The id part of a resource name: `accounts/abc` → `abc`. */
export function idOf(name: string): string {
  return name.slice(name.indexOf("/") + 1);
}
