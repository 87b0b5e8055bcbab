// Toasts: alerts and other notable live events, shown for a few seconds at the corner.
import { createContext, useCallback, useContext, useState, type ReactNode } from "react";
import { useEvent } from "../live/LiveContext";

interface Toast { id: number; text: string; tone: "ok" | "bad" | "warn" | "info" }
const Ctx = createContext<(text: string, tone?: Toast["tone"]) => void>(() => {});
let next = 1;

export function ToastProvider({ children }: { children: ReactNode }) {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const push = useCallback((text: string, tone: Toast["tone"] = "info") => {
    const id = next++;
    setToasts((t) => [...t.slice(-4), { id, text, tone }]);
    setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), 6000);
  }, []);
  return (
    <Ctx.Provider value={push}>
      {children}
      <div className="toasts" aria-live="polite">
        {toasts.map((t) => <div key={t.id} className={`toast ${t.tone}`}>{t.text}</div>)}
      </div>
    </Ctx.Provider>
  );
}

export const useToast = () => useContext(Ctx);

/** Subscribes the toasts to the events people want to hear about wherever they are. */
export function EventToasts() {
  const toast = useToast();
  useEvent("alert.*", (ev) => {
    const d = ev.data as { rule?: string; value?: number };
    const firing = ev.type !== "alert.resolved";
    toast(`Alert ${d.rule ?? ""} ${firing ? "triggered" : "resolved"}${d.value != null ? ` (${d.value.toFixed(2)})` : ""}`,
      firing ? "bad" : "ok");
  });
  useEvent("cert.*", (ev) => {
    const d = ev.data as { name?: string; names?: string[] };
    const what = d.name ?? d.names?.[0] ?? "";
    if (ev.type === "cert.failed") toast(`Certificate for ${what} failed`, "bad");
    else if (ev.type === "cert.issued") toast(`Certificate issued for ${what}`, "ok");
    else if (ev.type === "cert.expiring") toast(`Certificate for ${what} expires soon`, "warn");
  });
  useEvent("service.status.changed", (ev) => {
    const d = ev.data as { service?: string; status?: string };
    if (d.status === "crashloop" || d.status === "failed") toast(`Service ${d.service} is ${d.status}`, "bad");
  });
  return null;
}
