// Shared pieces of every screen: the page heading, the message area, actions that report their
// errors, and how times and names are shown.
import { timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { idOf } from "./api";
import { append, h, replace, type Child } from "./dom";
import { describeError } from "./errors";
import { formatDateTime, t } from "./i18n";

let messages: HTMLElement | null = null;

export function setMessageArea(element: HTMLElement): void {
  messages = element;
}

/** Shows a message above the page: `error` (red, stays until the next action) or `notice` (green). */
export function say(kind: "error" | "notice", text: string): void {
  if (!messages) return;
  replace(messages, h("div", { class: `message message-${kind}`, testid: kind, attrs: { role: kind === "error" ? "alert" : "status" } }, text));
}

interface Pending {
  kind: "error" | "notice";
  text: string;
}
let pending: Pending | null = null;

/** Goes to `hash`, showing `message` on the page that opens there. */
export function navigate(hash: string, message?: Pending): void {
  pending = message ?? null;
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = hash;
}

export function takePendingMessage(): Pending | null {
  const taken = pending;
  pending = null;
  return taken;
}

export function clearMessages(): void {
  if (messages) replace(messages);
}

export function showError(error: unknown): void {
  say("error", describeError(error).message);
}

/**
 * Runs `action` for a button or form: disables `control` meanwhile, clears old messages, shows the
 * error as a sentence when it fails. Returns whether it succeeded.
 */
export async function act(control: HTMLButtonElement | HTMLFormElement, action: () => Promise<void>): Promise<boolean> {
  const buttons = control instanceof HTMLFormElement ? Array.from(control.querySelectorAll("button")) : [control];
  buttons.forEach((button) => (button.disabled = true));
  clearMessages();
  try {
    await action();
    return true;
  } catch (error) {
    showError(error);
    return false;
  } finally {
    buttons.forEach((button) => (button.disabled = false));
  }
}

export function page(title: string, ...children: Child[]): HTMLElement {
  const section = h("section", { class: "page" }, h("h1", null, title));
  append(section, children);
  return section;
}

export function card(title: string | null, ...children: Child[]): HTMLElement {
  return h("div", { class: "card" }, title ? h("h2", null, title) : null, ...children);
}

/** A time in the current language (Intl.DateTimeFormat), "—" for none. */
export function when(timestamp: Timestamp | undefined): string {
  return timestamp ? formatDateTime(timestampDate(timestamp)) : "—";
}

const DAY_MS = 86_400_000;

/** The start of a "last `days` days" filter; undefined (no start, everything) for 0. */
export function since(days: number): Timestamp | undefined {
  return days ? timestampFromMs(Date.now() - days * DAY_MS) : undefined;
}

/** A short form of a UUID resource name for tables: `accounts/0a1b2c3d-…` → `0a1b2c3d`. */
export function shortId(name: string): string {
  return idOf(name).slice(0, 8);
}

export function loading(): HTMLElement {
  return h("p", { class: "loading" }, t().app.loading);
}

export function stat(label: string, value: Child, testid: string): HTMLElement {
  return h("div", { class: "stat", testid }, h("div", { class: "stat-value" }, value), h("div", { class: "stat-label" }, label));
}
