// Small primitives of the design system.
import { useState, type ReactNode } from "react";
import { ApiError } from "../api/client";
import { statusTone } from "../lib/format";

export function Card({ title, actions, children, className = "" }: {
  title?: ReactNode; actions?: ReactNode; children: ReactNode; className?: string;
}) {
  return (
    <section className={`card ${className}`}>
      {(title || actions) && (
        <div className="row" style={{ marginBottom: 10 }}>
          {title && <h2 style={{ margin: 0 }}>{title}</h2>}
          <span style={{ flex: 1 }} />
          {actions}
        </div>
      )}
      {children}
    </section>
  );
}

export function Badge({ status, children }: { status: string; children?: ReactNode }) {
  return <span className={`badge ${statusTone(status)}`} data-status={status}>{children ?? status}</span>;
}

export function Spinner({ label = "Loading" }: { label?: string }) {
  return <span className="spinner" role="status" aria-label={label} />;
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as Error;
  const rid = error instanceof ApiError ? error.requestId : null;
  return (
    <div className="error" role="alert">
      {e.message || String(error)}
      {rid && <span className="rid">request id {rid}</span>}
    </div>
  );
}

/** A button that runs an async action, shows progress, and reports a failure under itself. */
export function ActionButton({ onAction, children, kind = "", small, confirm, disabled, title }: {
  onAction: () => Promise<unknown>; children: ReactNode; kind?: "" | "primary" | "danger"; small?: boolean;
  confirm?: string; disabled?: boolean; title?: string;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <span style={{ display: "inline-grid", gap: 4 }}>
      <button
        type="button"
        title={title}
        className={`btn ${kind} ${small ? "small" : ""}`}
        disabled={busy || disabled}
        onClick={async () => {
          if (confirm && !window.confirm(confirm)) return;
          setBusy(true);
          setError(null);
          try {
            await onAction();
          } catch (e) {
            setError(e);
          } finally {
            setBusy(false);
          }
        }}
      >
        {busy && <Spinner label="Working" />}
        {children}
      </button>
      {error != null && <ErrorBox error={error} />}
    </span>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="muted" style={{ margin: "6px 0" }}>{children}</p>;
}

export function Segmented<T extends string>({ value, options, onChange, label }: {
  value: T; options: readonly T[]; onChange: (v: T) => void; label: string;
}) {
  return (
    <span className="seg" role="group" aria-label={label}>
      {options.map((o) => (
        <button key={o} type="button" className={o === value ? "on" : ""} aria-pressed={o === value} onClick={() => onChange(o)}>
          {o}
        </button>
      ))}
    </span>
  );
}

export function Tabs<T extends string>({ value, options, onChange }: {
  value: T; options: readonly { key: T; label: string }[]; onChange: (v: T) => void;
}) {
  return (
    <div className="tabs" role="tablist">
      {options.map((o) => (
        <button key={o.key} role="tab" aria-selected={o.key === value} className={o.key === value ? "on" : ""} onClick={() => onChange(o.key)}>
          {o.label}
        </button>
      ))}
    </div>
  );
}
