// Backups (snap): plans with their cron and next runs, add/remove (admin), run now with live progress,
// snapshots with sizes and dedup ratio, and the restore wizard (a directory or a shadow instance).
import { Fragment, useState, type FormEvent } from "react";
import { api, unwrap, type Schemas } from "../../api/client";
import { AdminOnly, useAuth } from "../../auth/AuthContext";
import { ActionButton, Badge, Card, Empty, ErrorBox, Spinner } from "../../components/ui";
import { bytes, dateTime } from "../../lib/format";
import { useAsync } from "../../lib/useAsync";
import { useEvent } from "../../live/LiveContext";
import { RestoreWizard } from "./RestoreWizard";
import { backupProgress, dedupRatio, useJob, type Job } from "./useJob";

type Plan = Schemas["SnapPlanScheduled"];
type Snapshot = Schemas["Snapshot"];

export default function BackupsPage() {
  const plans = useAsync(() => unwrap(api.GET("/api/snap/plans")));
  const snapshots = useAsync(() => unwrap(api.GET("/api/snap/snapshots")));
  const [restoring, setRestoring] = useState<Snapshot | null>(null);
  useEvent("snap.done", () => {
    void snapshots.reload();
    void plans.reload();
  });
  return (
    <div className="stack">
      <div className="page-head"><h1>Backups</h1></div>
      <Plans plans={plans.data} error={plans.error} reload={plans.reload} onRun={() => void snapshots.reload()} />
      <Snapshots snapshots={snapshots.data} error={snapshots.error} onRestore={setRestoring} />
      {restoring && (
        <RestoreWizard
          snapshot={restoring}
          plan={plans.data?.find((p) => p.name === restoring.plan) ?? null}
          onClose={() => setRestoring(null)}
        />
      )}
    </div>
  );
}

function retention(p: Schemas["SnapPlan"]): string {
  const parts = [
    p.keep_last && `last ${p.keep_last}`, p.keep_daily && `daily ${p.keep_daily}`,
    p.keep_weekly && `weekly ${p.keep_weekly}`, p.keep_monthly && `monthly ${p.keep_monthly}`,
  ].filter(Boolean);
  return parts.length ? parts.join(" · ") : "keep all";
}

function Plans({ plans, error, reload, onRun }: {
  plans: Plan[] | undefined; error: unknown; reload: () => Promise<void>; onRun: () => void;
}) {
  const [jobs, setJobs] = useState<Record<string, Job>>({});
  const [running, setRunning] = useState<Set<string>>(new Set());
  const setRun = (name: string, on: boolean) => setRunning((r) => {
    const n = new Set(r);
    if (on) n.add(name);
    else n.delete(name);
    return n;
  });
  return (
    <Card title="Plans">
      <ErrorBox error={error} />
      {!plans ? <Spinner /> : plans.length === 0 ? <Empty>No backup plans yet.</Empty> : (
        <div className="table-wrap"><table className="t" aria-label="Plans">
          <thead><tr><th>Name</th><th>Paths</th><th>Schedule</th><th>Next runs</th><th>Retention</th><th>Last run</th><th /></tr></thead>
          <tbody>
            {plans.map((p) => (
              <Fragment key={p.name}><tr data-plan={p.name}>
                <td style={{ whiteSpace: "nowrap" }}><b>{p.name}</b>{p.service && <div className="muted">service {p.service}</div>}</td>
                <td style={{ maxWidth: 300, overflowWrap: "anywhere" }}>{p.paths.map((x) => <div key={x}><code>{x}</code></div>)}</td>
                <td style={{ whiteSpace: "nowrap" }}>{p.cron ? <code>{p.cron}</code> : <span className="muted">on demand</span>}{!p.enabled && <Badge status="stopped">disabled</Badge>}</td>
                <td data-testid="next-runs" style={{ whiteSpace: "nowrap" }}>{p.next_runs.length ? p.next_runs.map((t) => <div key={t}>{dateTime(t)}</div>) : <span className="muted">–</span>}</td>
                <td>{retention(p)}</td>
                <td style={{ whiteSpace: "nowrap" }}>{dateTime(p.last_run_at)}</td>
                <td style={{ whiteSpace: "nowrap" }}>
                  <AdminOnly><div className="row">
                    <ActionButton small kind="primary" disabled={running.has(p.name)} onAction={async () => {
                      const job = await unwrap(api.POST("/api/snap/plans/{name}/run", { params: { path: { name: p.name } } }));
                      setJobs((js) => ({ ...js, [p.name]: job }));
                      setRun(p.name, job.state === "running");
                    }}>Run now</ActionButton>
                    <ActionButton small kind="danger" confirm={`Remove the plan ${p.name}? Its snapshots stay.`} onAction={async () => {
                      await unwrap(api.DELETE("/api/snap/plans/{name}", { params: { path: { name: p.name } } }));
                      await reload();
                    }}>Remove</ActionButton>
                  </div></AdminOnly>
                </td>
              </tr>
              {jobs[p.name] && (
                <tr><td colSpan={7} style={{ borderTop: "none", paddingTop: 0 }}>
                  <RunProgress key={jobs[p.name].id} job={jobs[p.name]} plan={p.name} onDone={() => { setRun(p.name, false); onRun(); void reload(); }} />
                </td></tr>
              )}
              </Fragment>
            ))}
          </tbody>
        </table></div>
      )}
      <AdminOnly><AddPlan onAdded={reload} /></AdminOnly>
    </Card>
  );
}

function RunProgress({ job: initial, plan, onDone }: { job: Job; plan: string; onDone: () => void }) {
  const { job, error } = useJob(initial, plan, onDone);
  const prog = backupProgress(job);
  if (!job) return null;
  return (
    <div className="row" style={{ gap: 10, marginTop: 2 }} data-testid={`run-${plan}`} data-state={job.state}>
      {job.state === "running" && (
        <>
          {prog && prog.expected_bytes > 0
            ? <progress max={prog.expected_bytes} value={Math.min(prog.bytes, prog.expected_bytes)} aria-label="Backup progress" />
            : <progress aria-label="Backup progress" />}
          <span className="muted">Backing up {plan}: {prog ? `${prog.files} files · ${bytes(prog.bytes)} read · ${bytes(prog.new_bytes)} new` : "starting…"}</span>
        </>
      )}
      {job.state === "done" && job.kind === "backup" && job.result && (
        <span><Badge status="ok">done</Badge> {plan}: snapshot <code>{job.result.snapshot.id.slice(0, 12)}</code> · {bytes(job.result.snapshot.stats.new_bytes)} new</span>
      )}
      {job.state === "failed" && (
        <div className="error" role="alert">
          {job.error?.message ?? "the backup failed"}
          {job.error?.details && typeof job.error.details.request_id === "string" && <span className="rid">request id {job.error.details.request_id}</span>}
        </div>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

const KEEP = ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"] as const;

function AddPlan({ onAdded }: { onAdded: () => Promise<void> }) {
  const blank = { name: "", paths: "", cron: "", service: "", keep_last: 0, keep_daily: 7, keep_weekly: 4, keep_monthly: 3 };
  const [f, setF] = useState(blank);
  const [error, setError] = useState<unknown>(null);
  async function add(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      await unwrap(api.POST("/api/snap/plans", {
        body: {
          name: f.name.trim(),
          paths: f.paths.split(/[\n,]/).map((s) => s.trim()).filter(Boolean),
          cron: f.cron.trim() || null,
          service: f.service.trim() || null,
          pre_hook: null, post_hook: null, rate_limit_mb_s: null, enabled: true,
          keep_last: f.keep_last, keep_daily: f.keep_daily, keep_weekly: f.keep_weekly, keep_monthly: f.keep_monthly,
        },
      }));
      setF(blank);
      await onAdded();
    } catch (err) {
      setError(err);
    }
  }
  return (
    <form onSubmit={add} aria-label="Add plan" style={{ marginTop: 12 }}>
      <h3 style={{ margin: "6px 0" }}>Add a plan</h3>
      <div className="row" style={{ alignItems: "end", flexWrap: "wrap" }}>
        <label className="field">Name<input value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} placeholder="app-daily" required /></label>
        <label className="field">Paths<input value={f.paths} onChange={(e) => setF({ ...f, paths: e.target.value })} placeholder="/srv/data/app, /etc/app" required /></label>
        <label className="field">Cron<input value={f.cron} onChange={(e) => setF({ ...f, cron: e.target.value })} placeholder="0 3 * * * (empty: on demand)" /></label>
        <label className="field">Service<input value={f.service} onChange={(e) => setF({ ...f, service: e.target.value })} placeholder="optional" /></label>
        {KEEP.map((k) => (
          <label key={k} className="field">{k.replace("_", "-")}
            <input type="number" min={0} max={10000} style={{ width: 80 }} value={f[k]} onChange={(e) => setF({ ...f, [k]: Number(e.target.value) })} />
          </label>
        ))}
        <button className="btn primary" type="submit">Add plan</button>
      </div>
      <ErrorBox error={error} />
    </form>
  );
}

function Snapshots({ snapshots, error, onRestore }: {
  snapshots: Snapshot[] | undefined; error: unknown; onRestore: (s: Snapshot) => void;
}) {
  const { isAdmin } = useAuth();
  const newest = snapshots ? [...snapshots].reverse() : undefined;
  return (
    <Card title="Snapshots">
      <ErrorBox error={error} />
      {!newest ? <Spinner /> : newest.length === 0 ? <Empty>No snapshots yet: run a plan.</Empty> : (
        <div className="table-wrap"><table className="t" aria-label="Snapshots">
          <thead><tr><th>Time</th><th>Plan</th><th>Id</th><th>Files</th><th>Size</th><th>New</th><th>Stored</th><th title="size ÷ bytes added to the repository">Dedup</th><th>Took</th><th /></tr></thead>
          <tbody>
            {newest.map((s) => (
              <tr key={s.id} data-snapshot={s.id}>
                <td style={{ whiteSpace: "nowrap" }}>{dateTime(s.time)}</td>
                <td>{s.plan}</td>
                <td><code title={s.id}>{s.id.slice(0, 12)}</code></td>
                <td>{s.stats.files}</td>
                <td data-testid="size" title={`${s.stats.bytes} bytes`}>{bytes(s.stats.bytes)}</td>
                <td>{bytes(s.stats.new_bytes)}</td>
                <td data-testid="stored" title={`${s.stats.stored_bytes} bytes`}>{bytes(s.stats.stored_bytes)}</td>
                <td data-testid="dedup">{dedupRatio(s.stats.bytes, s.stats.stored_bytes)}</td>
                <td>{s.stats.duration_s.toFixed(1)} s{s.stats.error_count > 0 && <Badge status="warn">{s.stats.error_count} errors</Badge>}</td>
                <td>{isAdmin && <button type="button" className="btn small" onClick={() => onRestore(s)}>Restore…</button>}</td>
              </tr>
            ))}
          </tbody>
        </table></div>
      )}
    </Card>
  );
}
