// Turns a failed call into a sentence a person can act on: the server's ErrorInfo reason (AIP-193) and
// BadRequest field violations first, the gRPC status code otherwise, and a reference (the request id)
// when only an engineer can help.
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../generated/ts/google/rpc/error_details_pb";
import { AmountError } from "./money";

const REASONS: Record<string, string> = {
  INVALID_CREDENTIALS: "Wrong e-mail or password.",
  TENANT_NOT_FOUND: "There is no organisation with that name.",
  TENANT_SUSPENDED: "This organisation is suspended.",
  PRINCIPAL_DISABLED: "This login is disabled.",
  TOKEN_EXPIRED: "Your session has ended. Please sign in again.",
  TOKEN_INVALID: "Your session is no longer valid. Please sign in again.",
  TOKEN_REVOKED: "You were signed out. Please sign in again.",
  REFRESH_TOKEN_INVALID: "Your session has ended. Please sign in again.",
  REFRESH_TOKEN_REUSED: "Your session was ended for safety (it was used elsewhere). Please sign in again.",
  RATE_LIMITED: "Too many attempts.",
  ACCOUNT_FROZEN: "The account is frozen: it can neither send nor receive money.",
  ACCOUNT_CLOSED: "The account is closed.",
  ACCOUNT_NOT_FOUND: "That account does not exist.",
  ACCOUNT_NOT_EMPTY: "Only an account with a zero balance and nothing held can be closed.",
  INSUFFICIENT_FUNDS: "There is not enough money in the account.",
  OVERDRAWN: "There is not enough money in the account.",
  CURRENCY_MISMATCH: "The currencies do not match.",
  AMOUNT_OUT_OF_RANGE: "The amount must be between 0.01 and 1,000,000.00.",
  REFUND_EXCEEDS_PAYMENT: "That is more than is left to refund on this payment.",
  TRANSFER_NOT_REFUNDABLE: "Only payments and captures can be refunded.",
  PAYMENT_NOT_FOUND: "That payment does not exist.",
  HOLD_ALREADY_RESOLVED: "This hold was already captured, voided or expired.",
  HOLD_EXPIRED: "This hold has expired.",
  CAPTURE_EXCEEDS_HOLD: "That is more than the amount held.",
  REQUEST_ID_REUSED: "This form was already sent with different values. Reload the page and try again.",
  EMAIL_TAKEN: "Someone already uses that e-mail address.",
  NOT_A_MERCHANT: "That user is not a merchant.",
  MERCHANT_NOT_FOUND: "That merchant does not exist.",
  TERMINAL_NOT_FOUND: "That terminal does not exist.",
  OWNER_NOT_FOUND: "That person does not exist.",
  ROLE_NOT_GRANTABLE: "You may not give that role.",
  ROLE_NOT_ALLOWED: "That role is not allowed here.",
  ACCOUNT_KIND_NOT_ALLOWED: "That kind of account cannot be opened for this person.",
  SAME_ACCOUNT: "The two accounts must differ.",
  PASSWORD_HASHING_BUSY: "The service is busy. Try again in a moment.",
  SESSION_STORE_UNAVAILABLE: "The service is not fully available right now. Try again in a moment.",
  DATABASE_UNAVAILABLE: "The service is not fully available right now. Try again in a moment.",
  WATCH_INTERRUPTED: "The live feed was interrupted; it reconnects by itself.",
};

const CODES: Partial<Record<Code, string>> = {
  [Code.Unauthenticated]: "Your session has ended. Please sign in again.",
  [Code.PermissionDenied]: "You are not allowed to do that.",
  [Code.NotFound]: "It does not exist (or is not yours to see).",
  [Code.InvalidArgument]: "Some of what you entered is not valid.",
  [Code.FailedPrecondition]: "That cannot be done in the current state.",
  [Code.AlreadyExists]: "It already exists.",
  [Code.ResourceExhausted]: "Too many requests.",
  [Code.Unavailable]: "The service cannot be reached right now. Try again in a moment.",
  [Code.DeadlineExceeded]: "The service took too long to answer. Check before trying again.",
  [Code.Canceled]: "The request was cancelled.",
};

/** `amount_minor` → `Amount`, `display_name` → `Display name`. */
function fieldLabel(path: string): string {
  const last = path.split(".").pop() ?? path;
  const words = last.replace(/_minor$/, "").replace(/([a-z])([A-Z])/g, "$1 $2").replace(/_/g, " ").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export interface Described {
  message: string;
  code?: Code;
  reason?: string;
}

export function describeError(error: unknown): Described {
  if (error instanceof AmountError) return { message: error.message };
  if (!(error instanceof ConnectError)) {
    return { message: error instanceof Error ? error.message : String(error) };
  }
  const reason = error.findDetails(ErrorInfoSchema)[0]?.reason;
  const violations = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations);
  const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  const parts: string[] = [];
  if (violations.length > 0) {
    parts.push(violations.map((violation) => `${fieldLabel(violation.field)}: ${violation.description}`).join("; ") + ".");
  } else if (reason && REASONS[reason]) {
    parts.push(REASONS[reason]);
  } else {
    parts.push(CODES[error.code] ?? "Something went wrong on our side.");
    // The server's own words help when we have no sentence of our own for the reason.
    if (error.rawMessage && (error.code === Code.InvalidArgument || error.code === Code.FailedPrecondition)) {
      parts.push(`(${error.rawMessage})`);
    }
  }
  if (retry) parts.push(`Try again in ${Math.max(1, Number(retry.seconds))} s.`);
  if (error.code === Code.Internal || error.code === Code.Unknown || error.code === Code.DataLoss) {
    const requestId = error.metadata.get("x-request-id");
    if (requestId) parts.push(`Reference: ${requestId}.`);
  }
  return { message: parts.join(" "), code: error.code, reason };
}
