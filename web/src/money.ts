// Money is an integer number of minor units (int64, a bigint here) plus an ISO-4217 code. It is turned
// into text for display (Intl.NumberFormat in the current language, with the currency's decimals) and
// parsed back from what a person types, never through floating point.
import { language, locale, t } from "./i18n";

const fractionDigitsCache = new Map<string, number>();

/** Decimals of `currency`: the server's ISO 4217 figure when the caller has one (an account's
 * `currencyMinorUnits`), else what the browser knows of the currency (Intl), else 2. */
export function fractionDigits(currency: string, minorUnits?: number): number {
  if (minorUnits !== undefined) return minorUnits;
  let digits = fractionDigitsCache.get(currency);
  if (digits === undefined) {
    try {
      digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
    } catch {
      digits = 2; // an unknown code: show it with two decimals
    }
    fractionDigitsCache.set(currency, digits);
  }
  return digits;
}

/** `1250n, 2` → `"12.50"`, `-5n, 2` → `"-0.05"`: an exact decimal, the form Intl.NumberFormat formats
 * without going through a float. */
function decimalString(amountMinor: bigint, digits: number): string {
  const negative = amountMinor < 0n;
  const magnitude = negative ? -amountMinor : amountMinor;
  const scale = 10n ** BigInt(digits);
  const fraction = digits > 0 ? "." + (magnitude % scale).toString().padStart(digits, "0") : "";
  return `${negative ? "-" : ""}${magnitude / scale}${fraction}`;
}

const moneyFormats = new Map<string, Intl.NumberFormat | null>();

function moneyFormat(currency: string, digits: number): Intl.NumberFormat | null {
  const key = `${locale()} ${currency} ${digits}`;
  let format = moneyFormats.get(key);
  if (format === undefined) {
    try {
      format = new Intl.NumberFormat(locale(), {
        style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
      });
    } catch {
      format = null; // a code Intl refuses: shown as the code and the number
    }
    moneyFormats.set(key, format);
  }
  return format;
}

/** The amount in the current language, with the currency's decimals: `1250n, "EUR"` → `"€12.50"` (en) or
 * `"€ 12,50"` (pt-BR); `123456n, "BRL"` → `"R$1,234.56"` / `"R$ 1.234,56"`; `1250n, "IQD", 3` → `"IQD 1.250"`. */
export function formatMoney(amountMinor: bigint, currency: string, minorUnits?: number): string {
  const digits = fractionDigits(currency, minorUnits);
  const exact = decimalString(amountMinor, digits);
  const format = moneyFormat(currency, digits);
  // Intl.NumberFormat formats a decimal string exactly (no float in between); the type library only knows numbers.
  if (format) return format.format(exact as unknown as number);
  const number = new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return `${currency} ${number.format(exact as unknown as number)}`;
}

export class AmountError extends Error {}

/** The decimal separator people of the current language type: "." in English, "," in Portuguese. */
function decimalSeparator(): "." | "," {
  return language() === "pt-BR" ? "," : ".";
}

function escaped(separator: string): string {
  return separator === "." ? "\\." : separator;
}

/** A typed amount as `1234.56`, or an error when its separators are ambiguous. With both "," and ".", the
 * last is the decimal separator and the other must group thousands (`1,250.00`, `1.250,00`). One separator
 * used again and again groups thousands (`1.250.000`). One separator once: the language's decimal separator
 * is one (`12.50` in English, `12,50` in Portuguese); the other language's is taken as a decimal separator
 * too unless three digits follow it — `1,250` in English (or `1.250` in Portuguese) could be a thousand
 * or one and a quarter, so it is refused rather than guessed: a wrong guess would move a hundred or a
 * thousand times the money. */
function normalizedAmount(text: string, digits: number): string {
  const compact = text.replace(/\s/g, "");
  const hasDot = compact.includes(".");
  const hasComma = compact.includes(",");
  const ambiguous = () => new AmountError(t().money.ambiguous(text.trim()));
  if (!hasDot && !hasComma) return compact;
  if (hasDot && hasComma) {
    const decimal = compact.lastIndexOf(".") > compact.lastIndexOf(",") ? "." : ",";
    const group = decimal === "." ? "," : ".";
    const grouped = new RegExp(`^\\d{1,3}(${escaped(group)}\\d{3})+(${escaped(decimal)}\\d*)?$`);
    if (grouped.test(compact)) return compact.split(group).join("").replace(decimal, ".");
    throw ambiguous();
  }
  const separator = hasDot ? "." : ",";
  const parts = compact.split(separator);
  if (parts.length > 2) {
    if (/^\d{1,3}$/.test(parts[0]) && parts.slice(1).every((part) => /^\d{3}$/.test(part))) return parts.join("");
    throw ambiguous();
  }
  const [whole, fraction] = parts;
  if (separator === decimalSeparator()) return `${whole}.${fraction}`;
  if (/^\d+$/.test(whole) && /^\d+$/.test(fraction) && fraction.length <= digits && fraction.length !== 3) return `${whole}.${fraction}`;
  throw ambiguous();
}

/** `"12.5", "EUR"` → `1250n` (and `"12,5"`). Refuses signs, more decimals than the currency has, ambiguous separators and zero. */
export function parseAmount(text: string, currency: string, minorUnits?: number): bigint {
  const digits = fractionDigits(currency, minorUnits);
  const cleaned = normalizedAmount(text.trim(), digits);
  const match = /^(\d+)(?:\.(\d*))?$/.exec(cleaned);
  if (!match) throw new AmountError(t().money.notAnAmount(text));
  const fraction = match[2] ?? "";
  if (fraction.length > digits) throw new AmountError(t().money.tooManyDecimals(currency, digits));
  const minor = BigInt(match[1]) * 10n ** BigInt(digits) + BigInt(fraction.padEnd(digits, "0") || "0");
  if (minor <= 0n) throw new AmountError(t().money.notPositive);
  return minor;
}

/** A limit as typed: empty is no limit (undefined); zero is allowed (nothing may pass); anything else as parseAmount. */
export function parseLimit(text: string, currency: string, minorUnits?: number): bigint | undefined {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  if (/^0+([.,]0*)?$/.test(trimmed)) return 0n;
  return parseAmount(trimmed, currency, minorUnits);
}

/** The amount in minor units as a person types it, without grouping: `1250n, "EUR"` → `"12.50"` (en), `"12,50"` (pt-BR). */
export function amountText(amountMinor: bigint, currency: string, minorUnits?: number): string {
  return decimalString(amountMinor, fractionDigits(currency, minorUnits)).replace(".", decimalSeparator());
}
