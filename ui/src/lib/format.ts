// Number and time formatting shared by the pages.
export function bytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${(n < 0 ? -v : v).toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function pct(n: number | null | undefined): string {
  return n == null ? "–" : `${n.toFixed(n >= 10 ? 0 : 1)} %`;
}

export function num(n: number | null | undefined, digits = 1): string {
  return n == null ? "–" : n.toFixed(digits);
}

export function dateTime(ts: number | null | undefined): string {
  if (ts == null) return "–";
  return new Date(ts * 1000).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function timeOf(ts: number | string): string {
  const d = typeof ts === "number" ? new Date(ts * 1000) : new Date(ts);
  return d.toLocaleTimeString(undefined, { hour12: false });
}

export const nowS = (): number => Date.now() / 1000;

export function statusTone(status: string): "ok" | "warn" | "bad" | "info" | "" {
  if (["running", "valid", "ok", "healthy", "active", "succeeded"].includes(status)) return "ok";
  if (["starting", "pending", "degraded", "expiring", "stopping", "deploying", "rolled_back"].includes(status)) return "warn";
  if (["crashloop", "failed", "expired", "firing", "down", "error"].includes(status)) return "bad";
  if (["stopped", "exited"].includes(status)) return "";
  return "info";
}
