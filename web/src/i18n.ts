// The back office's language: English or Brazilian Portuguese, every visible text taken from one
// message catalogue (messages.ts) and every number, amount and date formatted by the browser's Intl for
// that language.
//
// Hand-written, without an i18n library: the catalogue is small (a few hundred texts, two languages),
// TypeScript already checks it (the Portuguese dictionary has the English one's type, so a text missing
// in either language fails `tsc`), and Intl does all the formatting (currencies with their minor units,
// thousands separators, dates). A library would add a dependency and a runtime for nothing more.
//
// The language is the one chosen with the switch (kept in localStorage), else the browser's first
// preference (navigator.languages: any `pt…` → pt-BR, anything else → English). Screens read texts when
// they draw, so a switch redraws the current screen (onLanguageChange).
import { h } from "./dom";
import { CATALOGUES, type Catalogue, type Language, LANGUAGES } from "./messages";

export type { Catalogue, Language };
export { LANGUAGES };

const STORAGE_KEY = "emoney.back-office.language";

/** The Intl locale each language formats with: British English (the texts' spelling), Brazilian Portuguese. */
const FORMAT_LOCALES: Record<Language, string> = { en: "en-GB", "pt-BR": "pt-BR" };

function isLanguage(value: unknown): value is Language {
  return typeof value === "string" && (LANGUAGES as readonly string[]).includes(value);
}

/** pt-BR for any Portuguese preference (pt, pt-BR, pt-PT), English for anything else. */
export function languageFromBrowser(preferences: readonly string[]): Language {
  const first = preferences.find((tag) => typeof tag === "string" && tag.length > 0);
  return first && /^pt\b/i.test(first) ? "pt-BR" : "en";
}

function storedLanguage(): Language | null {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    return isLanguage(stored) ? stored : null;
  } catch {
    return null; // storage refused (private mode): the browser's preference then
  }
}

function browserPreferences(): readonly string[] {
  return navigator.languages?.length ? navigator.languages : [navigator.language ?? ""];
}

let current: Language = storedLanguage() ?? languageFromBrowser(browserPreferences());
const listeners: (() => void)[] = [];

export function language(): Language {
  return current;
}

/** The texts of the current language. */
export function t(): Catalogue {
  return CATALOGUES[current];
}

/** The Intl locale of the current language. */
export function locale(): string {
  return FORMAT_LOCALES[current];
}

/** Sets <html lang> and the page title for the current language. */
export function applyLanguage(): void {
  document.documentElement.lang = current;
  document.title = t().app.title;
}

/** Changes the language, remembers it and redraws (through the listeners). */
export function setLanguage(next: Language): void {
  if (next === current) return;
  current = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // not remembered, still switched
  }
  applyLanguage();
  for (const listener of listeners) listener();
}

export function onLanguageChange(listener: () => void): void {
  listeners.push(listener);
}

/** The switch shown on every screen: one button per language, the current one pressed. */
export function languageSwitch(): HTMLElement {
  return h(
    "div",
    { class: "language-switch", testid: "language-switch", attrs: { role: "group", "aria-label": t().app.language } },
    LANGUAGES.map((option) => {
      const button = h(
        "button",
        {
          class: option === current ? "language current" : "language",
          testid: `language-${option}`,
          attrs: { type: "button", lang: option, "aria-pressed": option === current ? "true" : "false", title: CATALOGUES[option].app.languageName },
        },
        CATALOGUES[option].app.languageShort,
      );
      button.addEventListener("click", () => setLanguage(option));
      return button;
    }),
  );
}

// --- formatting -------------------------------------------------------------------------------

const numberFormats = new Map<string, Intl.NumberFormat>();
const dateFormats = new Map<string, Intl.DateTimeFormat>();

/** A whole number in the current language: 1234 → "1,234" (en) / "1.234" (pt-BR). */
export function formatNumber(value: number | bigint): string {
  const key = locale();
  let format = numberFormats.get(key);
  if (!format) numberFormats.set(key, (format = new Intl.NumberFormat(key, { maximumFractionDigits: 0 })));
  return format.format(value);
}

/** A date and time in the current language: "6 Dec 2026, 14:03:50" / "6 de dez. de 2026, 14:03:50". */
export function formatDateTime(date: Date): string {
  const key = locale();
  let format = dateFormats.get(key);
  if (!format) dateFormats.set(key, (format = new Intl.DateTimeFormat(key, { dateStyle: "medium", timeStyle: "medium" })));
  return format.format(date);
}

/** A file's size in the current language: "812 byte", "12.4 kB" / "12,4 kB". */
export function formatSize(bytes: number | bigint): string {
  const count = Number(bytes);
  const [value, unit] = count < 1000 ? [count, "byte"] : count < 1_000_000 ? [count / 1000, "kilobyte"] : [count / 1_000_000, "megabyte"];
  return new Intl.NumberFormat(locale(), { style: "unit", unit, unitDisplay: "short", maximumFractionDigits: 1 }).format(value);
}

/** `2026-12-06`: the calendar date it is at `instant` in the IANA time zone `zone` (the browser's own when none). */
export function dateIn(instant: Date, zone?: string): string {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(instant);
  const part = (type: string) => parts.find((item) => item.type === type)?.value ?? "";
  return `${part("year")}-${part("month")}-${part("day")}`;
}

/** How far `zone`'s wall clock is ahead of UTC at `instantMs`, in milliseconds. */
function zoneOffsetMs(instantMs: number, zone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(instantMs));
  const part = (type: string) => Number(parts.find((item) => item.type === type)?.value ?? 0);
  const wallClock = Date.UTC(part("year"), part("month") - 1, part("day"), part("hour"), part("minute"), part("second"));
  return wallClock - Math.floor(instantMs / 1000) * 1000;
}

/** The instant a calendar date (`2026-12-06`, as a date input gives it) begins in `zone` (the browser's own when
 * none); `addDays` moves the date first. NaN for a date that is not one. */
export function startOfDay(date: string, zone?: string, addDays = 0): number {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!match) return Number.NaN;
  const [year, month, day] = [Number(match[1]), Number(match[2]) - 1, Number(match[3]) + addDays];
  if (!zone) return new Date(year, month, day).getTime();
  const wallClock = Date.UTC(year, month, day);
  // The offset at the wall-clock time read as UTC, then at the instant that gives (right across a DST change).
  const first = wallClock - zoneOffsetMs(wallClock, zone);
  return wallClock - zoneOffsetMs(first, zone);
}
