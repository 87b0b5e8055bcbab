// The host scan (admin only, as the API is): findings grouped by severity with their evidence and the
// exact fix, "Scan now", and findings raised by the server's periodic scans arriving live.
import { useEffect, useState } from "react";
import { api, unwrap, type Schemas } from "../../api/client";
import { Card, Empty, ErrorBox, Spinner } from "../../components/ui";
import { dateTime } from "../../lib/format";
import { useEvent } from "../../live/LiveContext";
import { CopyButton } from "./copy";
import { findingFromEvent, fixParts, fixToCopy, groupBySeverity, SEVERITIES, type Severity } from "./findings";

const TONE: Record<Severity, string> = { critical: "sev-critical", high: "bad", medium: "warn", low: "info", info: "" };

export function SeverityBadge({ severity }: { severity: Severity }) {
  return <span className={`badge ${TONE[severity]}`} data-severity={severity}>{severity}</span>;
}

export function ScanCard() {
  const [report, setReport] = useState<Schemas["ScanReport"] | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  async function run() {
    setBusy(true);
    setError(null);
    try {
      setReport(await unwrap(api.GET("/api/security/scan")));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  useEffect(() => { void run(); }, []);
  useEvent("security.finding", (ev) => {
    const f = findingFromEvent(ev.data);
    if (!f) return;
    setReport((r) => {
      if (!r || r.findings.some((x) => x.id === f.id)) return r;
      return { ...r, findings: [...r.findings, f], counts: { ...r.counts, [f.severity]: (r.counts[f.severity] ?? 0) + 1 } };
    });
  });
  const groups = report ? groupBySeverity(report.findings) : [];
  return (
    <Card title="Host scan" actions={
      <button type="button" className="btn small" onClick={run} disabled={busy}>{busy && <Spinner label="Scanning" />}Scan now</button>
    }>
      <div data-testid="scan">
        <ErrorBox error={error} />
        {!report ? (!error && <Spinner label="Scanning" />) : (
          <>
            <p className="muted" style={{ marginTop: 0 }} data-testid="scan-summary">
              Scanned {dateTime(report.scanned_at)} · {SEVERITIES.filter((s) => report.counts[s]).map((s) => `${report.counts[s]} ${s}`).join(", ") || "nothing found"}
              {report.failing && <> · <strong style={{ color: "var(--bad)" }}>needs attention</strong></>}
            </p>
            {groups.length === 0 ? <Empty>No findings: nothing to fix.</Empty> : groups.map(([sev, fs]) => (
              <section key={sev} className="scan-group" aria-label={`${sev} findings`}>
                <h3 className="scan-sev"><SeverityBadge severity={sev} /> {fs.length}</h3>
                {fs.map((f) => (
                  <div key={f.id} className="finding" data-testid="finding" data-id={f.id}>
                    <div className="row" style={{ justifyContent: "space-between" }}>
                      <strong>{f.title}</strong>
                      <span>{f.new && <span className="badge info">new</span>} <span className="muted">{f.category}</span></span>
                    </div>
                    {f.evidence.length > 0 && (
                      <ul className="evidence">{f.evidence.map((e, i) => <li key={i} className="mono">{e}</li>)}</ul>
                    )}
                    <div className="fix">
                      <span className="muted">Fix:</span>
                      <span data-testid="fix" data-fix={f.fix}>
                        {fixParts(f.fix).map((p, i) => (i % 2 === 1 ? <code key={i} className="mono">{p}</code> : <span key={i}>{p}</span>))}
                      </span>
                      <CopyButton text={fixToCopy(f.fix)} label="Copy fix" />
                    </div>
                  </div>
                ))}
              </section>
            ))}
          </>
        )}
      </div>
    </Card>
  );
}
