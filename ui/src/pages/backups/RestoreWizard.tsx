// The restore wizard: the snapshot picked in the list → where (a new directory, the server's default,
// or a shadow instance when the plan names a service) → confirm → progress → result (and the shadow's URL).
import { useEffect, useRef, useState } from "react";
import { api, unwrap, type Schemas } from "../../api/client";
import { ActionButton, Badge, Card, ErrorBox } from "../../components/ui";
import { bytes, dateTime } from "../../lib/format";
import { restoreProgress, useJob, type Job } from "./useJob";

type Where = "default" | "dir";

export function RestoreWizard({ snapshot, plan, onClose }: {
  snapshot: Schemas["Snapshot"]; plan: Schemas["SnapPlan"] | null; onClose: () => void;
}) {
  const [step, setStep] = useState<"target" | "confirm" | "run">("target");
  const [where, setWhere] = useState<Where>("default");
  const [dir, setDir] = useState("");
  const [shadow, setShadow] = useState(false);
  const [job, setJob] = useState<Job | null>(null);
  const service = plan?.service ?? null;
  const stamp = new Date(snapshot.time * 1000).toISOString().slice(0, 19).replace(/[:T]/g, "-");
  const suggested = `<restore root>/${snapshot.plan}-${stamp}`;
  const dirOk = where !== "dir" || dir.startsWith("/");
  const steps = ["Snapshot", "Target", "Confirm", "Restore"];
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => box.current?.scrollIntoView({ block: "nearest" }), [snapshot.id]);
  const at = { target: 1, confirm: 2, run: 3 }[step];
  return (
    <Card title={`Restore snapshot ${snapshot.id.slice(0, 12)}`} className="restore-wizard"
      actions={<button type="button" className="btn small" onClick={onClose}>Close</button>}>
      <div role="region" aria-label="Restore wizard" ref={box}>
        <ol className="row" style={{ listStyle: "none", padding: 0, gap: 14 }} aria-label="Steps">
          {steps.map((s, i) => <li key={s} aria-current={i === at ? "step" : undefined} className={i === at ? "" : "muted"}>{i + 1}. {s}</li>)}
        </ol>
        <p className="muted">{snapshot.plan} · {dateTime(snapshot.time)} · {snapshot.stats.files} files · {bytes(snapshot.stats.bytes)} · {snapshot.paths.join(", ")}</p>
        {step === "target" && (
          <div className="stack" style={{ gap: 8 }}>
            <label className="row"><input type="radio" name="where" checked={where === "default"} onChange={() => setWhere("default")} />
              The default location <code>{suggested}</code></label>
            <label className="row"><input type="radio" name="where" checked={where === "dir"} onChange={() => setWhere("dir")} />
              A new directory</label>
            {where === "dir" && (
              <label className="field">Target directory
                <input value={dir} onChange={(e) => setDir(e.target.value)} placeholder={`/srv/restore/${snapshot.plan}-${stamp}`} />
              </label>
            )}
            {service && (
              <label className="row"><input type="checkbox" checked={shadow} onChange={(e) => setShadow(e.target.checked)} />
                Start a shadow instance of <b>{service}</b> from it (a copy on a spare port, health-checked)</label>
            )}
            {!dirOk && <div className="error" role="alert">The target must be an absolute path (e.g. /srv/restore/app).</div>}
            <div className="row"><button type="button" className="btn primary" disabled={!dirOk || (where === "dir" && !dir)} onClick={() => setStep("confirm")}>Next</button></div>
          </div>
        )}
        {step === "confirm" && (
          <div className="stack" style={{ gap: 8 }}>
            <p>Restore <code>{snapshot.id.slice(0, 12)}</code> of <b>{snapshot.plan}</b> into{" "}
              {where === "dir" ? <code>{dir}</code> : <code>{suggested}</code>}
              {shadow && <> and start a shadow instance of <b>{service}</b></>}. An existing non-empty directory is refused.</p>
            <div className="row">
              <button type="button" className="btn" onClick={() => setStep("target")}>Back</button>
              <ActionButton kind="primary" onAction={async () => {
                const j = await unwrap(api.POST("/api/snap/restore", {
                  body: { snapshot: snapshot.id, target: where === "dir" ? dir : null, shadow: shadow && service != null, path: null, force: false },
                }));
                setJob(j);
                setStep("run");
              }}>Restore</ActionButton>
            </div>
          </div>
        )}
        {step === "run" && job && <RestoreRun key={job.id} job={job} />}
      </div>
    </Card>
  );
}

function RestoreRun({ job: initial }: { job: Job }) {
  const { job, error } = useJob(initial, null);
  if (!job || job.kind !== "restore") return null;
  const prog = restoreProgress(job);
  const res = job.result;
  return (
    <div className="stack" style={{ gap: 6 }} data-testid="restore-run" data-state={job.state}>
      <div>Into <code data-testid="restore-target">{job.target}</code></div>
      {job.state === "running" && (
        <>
          <progress aria-label="Restore progress" />
          <span className="muted">{prog ? `${prog.files} files · ${bytes(prog.bytes)} written` : "starting…"}</span>
        </>
      )}
      {job.state === "done" && res && (
        <div className="stack" style={{ gap: 4 }}>
          <span>{res.ok ? <Badge status="ok">restored</Badge> : <Badge status="failed">damaged</Badge>}{" "}
            {res.files} files · {res.dirs} dirs · {res.symlinks} symlinks · {bytes(res.bytes)}{res.skipped > 0 && ` · ${res.skipped} skipped`}</span>
          {res.damaged.length > 0 && (
            <ul className="error">{res.damaged.map((d) => <li key={d.path}><code>{d.path}</code>: {d.error}</li>)}</ul>
          )}
          {res.shadow && (
            <span data-testid="shadow">Shadow <b>{res.shadow.name}</b> <Badge status={res.shadow.healthy ? "healthy" : "failed"}>{res.shadow.healthy ? "healthy" : res.shadow.status}</Badge>
              {res.shadow.url ? <> at <a href={res.shadow.url} target="_blank" rel="noreferrer">{res.shadow.url}</a></> : <span className="muted"> {res.shadow.reason}</span>}{" "}
              <ShadowStop name={res.shadow.name} /></span>
          )}
        </div>
      )}
      {job.state === "failed" && (
        <div className="error" role="alert">
          {job.error?.message ?? "the restore failed"}
          {job.error?.details && typeof job.error.details.request_id === "string" && <span className="rid">request id {job.error.details.request_id}</span>}
        </div>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

function ShadowStop({ name }: { name: string }) {
  const [stopped, setStopped] = useState(false);
  if (stopped) return <Badge status="stopped">stopped</Badge>;
  return (
    <ActionButton small kind="danger" confirm={`Stop the shadow instance ${name}?`} onAction={async () => {
      await unwrap(api.DELETE("/api/snap/shadows/{name}", { params: { path: { name } } }));
      setStopped(true);
    }}>Stop shadow</ActionButton>
  );
}
