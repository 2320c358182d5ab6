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
