// Money is an integer number of minor units (int64, a bigint here) plus an ISO-4217 code. It is turned
// into text for display and parsed back from what a person types, never through floating point.

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

const grouping = new Intl.NumberFormat("en-GB", { useGrouping: true });

/** `1250n, "EUR"` → `"EUR 12.50"`; `-5n` → `"EUR -0.05"`; `1250n, "JPY", 0` → `"JPY 1,250"`. */
export function formatMoney(amountMinor: bigint, currency: string, minorUnits?: number): string {
  const digits = fractionDigits(currency, minorUnits);
  const negative = amountMinor < 0n;
  const magnitude = negative ? -amountMinor : amountMinor;
  const scale = 10n ** BigInt(digits);
  const whole = grouping.format(magnitude / scale);
  const fraction = digits > 0 ? "." + (magnitude % scale).toString().padStart(digits, "0") : "";
  return `${currency} ${negative ? "-" : ""}${whole}${fraction}`;
}

export class AmountError extends Error {}

/** A typed amount with its commas resolved, or an error when they are ambiguous. `12,50` is a decimal
 * comma (12.50); `1,250.00` uses commas between thousands; `1,250` could be either, so it is refused
 * rather than guessed — a wrong guess would move a hundred or a thousand times the money. */
function withoutCommas(text: string, digits: number): string {
  const compact = text.replace(/\s/g, "");
  if (!compact.includes(",")) return compact;
  if (compact.includes(".")) {
    if (/^\d{1,3}(,\d{3})+(\.\d*)?$/.test(compact)) return compact.replace(/,/g, "");
  } else {
    const decimal = /^(\d+),(\d+)$/.exec(compact);
    if (decimal && decimal[2].length <= digits && decimal[2].length !== 3) return `${decimal[1]}.${decimal[2]}`;
  }
  throw new AmountError(`“${text.trim()}” is ambiguous: write it like 1250.00, with a dot before the decimals`);
}

/** `"12.5", "EUR"` → `1250n`. Refuses signs, more decimals than the currency has, ambiguous commas and zero. */
export function parseAmount(text: string, currency: string, minorUnits?: number): bigint {
  const digits = fractionDigits(currency, minorUnits);
  const cleaned = withoutCommas(text.trim(), digits);
  const match = /^(\d+)(?:\.(\d*))?$/.exec(cleaned);
  if (!match) throw new AmountError(`“${text}” is not an amount: write it like 12.50`);
  const fraction = match[2] ?? "";
  if (fraction.length > digits) {
    throw new AmountError(`${currency} amounts have at most ${digits} decimal${digits === 1 ? "" : "s"}`);
  }
  const minor = BigInt(match[1]) * 10n ** BigInt(digits) + BigInt(fraction.padEnd(digits, "0") || "0");
  if (minor <= 0n) throw new AmountError("The amount must be more than zero");
  return minor;
}

/** The amount in minor units as a person types it: `1250n, "EUR"` → `"12.50"`. */
export function amountText(amountMinor: bigint, currency: string, minorUnits?: number): string {
  return formatMoney(amountMinor, currency, minorUnits).slice(currency.length + 1).replace(/,/g, "");
}
