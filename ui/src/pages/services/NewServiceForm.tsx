// Create an image service without writing YAML: name, image, ports, env, volumes, limits, replicas and
// an optional HTTP health check become a spec (JSON) applied by POST /api/services. The API's
// validation problems carry the field path (`volumes[0]`, `resources.memory`): each is shown under its field.
import { useState, type FormEvent, type ReactNode } from "react";
import { stringify } from "yaml";
import { api, ApiError, unwrap, type Schemas } from "../../api/client";
import { ErrorBox, Spinner } from "../../components/ui";
import { buildSpec, EMPTY_FORM, fieldOf, type FieldKey, type PortRow, type ServiceForm } from "./serviceForm";

export function NewServiceForm({ onApplied, onYaml }: {
  onApplied: (r: Schemas["ServiceApplied"]) => void; onYaml: (yaml: string) => void;
}) {
  const [f, setF] = useState<ServiceForm>(EMPTY_FORM);
  const [errs, setErrs] = useState<Partial<Record<FieldKey, string[]>>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: Exclude<keyof ServiceForm, "ports">) => (e: { target: { value: string } }) => setF({ ...f, [k]: e.target.value });
  const setPort = (i: number, k: keyof PortRow, v: string) => setF({ ...f, ports: f.ports.map((p, j) => (j === i ? { ...p, [k]: v } : p)) });

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    const { spec, problems } = buildSpec(f);
    setErrs(problems);
    if (Object.keys(problems).length) return;
    setBusy(true);
    try {
      onApplied(await unwrap(api.POST("/api/services", { body: spec as never, params: { query: { filename: "new service form" } } as never })));
    } catch (err) {
      const raw = err instanceof ApiError ? err.details.problems : undefined;
      if (Array.isArray(raw) && raw.length) {
        const byField: Partial<Record<FieldKey, string[]>> = {};
        for (const p of raw as { field?: string; message?: string }[]) {
          const k = fieldOf(p.field ?? "");
          (byField[k] ??= []).push(k === "other" && p.field ? `${p.field}: ${p.message ?? ""}` : p.message ?? "");
        }
        setErrs(byField);
      } else setError(err);
    } finally {
      setBusy(false);
    }
  }

  const problem = (k: FieldKey): ReactNode => errs[k]?.length ? (
    <span className="field-problem" role="alert" data-field={k}>{errs[k]!.join("; ")}</span>
  ) : null;
  const invalid = (k: FieldKey) => (errs[k]?.length ? true : undefined);

  return (
    <form className="stack" onSubmit={submit} aria-label="New service">
      <div className="form-grid" style={{ alignItems: "start" }}>
        <label className="field">Name<span className="hint">lowercase letters, digits and dashes; routes reach it as service:NAME</span>
          <input name="name" required value={f.name} onChange={set("name")} aria-invalid={invalid("name")} placeholder="site" />{problem("name")}</label>
        <label className="field">Image<span className="hint">used as is when present locally, else pulled</span>
          <input name="image" required value={f.image} onChange={set("image")} aria-invalid={invalid("image")} placeholder="nginx:1.27" />{problem("image")}</label>
        <fieldset className="field wide" aria-label="Ports">
          <legend>Ports<span className="hint"> name and the port inside the container; published on a 127.0.0.1 port orch picks</span></legend>
          {f.ports.map((p, i) => (
            <div className="row" key={i}>
              <input aria-label={`Port ${i + 1} name`} value={p.name} onChange={(e) => setPort(i, "name", e.target.value)} placeholder="http" style={{ width: 140 }} />
              <input aria-label={`Port ${i + 1} internal`} value={p.internal} onChange={(e) => setPort(i, "internal", e.target.value)} placeholder="80" style={{ width: 100 }} aria-invalid={invalid("ports")} />
              <button type="button" className="btn small" onClick={() => setF({ ...f, ports: f.ports.filter((_, j) => j !== i) })}>Remove port</button>
            </div>
          ))}
          <div className="row"><button type="button" className="btn small" onClick={() => setF({ ...f, ports: [...f.ports, { name: "", internal: "" }] })}>Add port</button></div>
          {problem("ports")}
        </fieldset>
        <label className="field">Environment<span className="hint">KEY=VALUE, one per line</span>
          <textarea name="env" rows={3} value={f.env} onChange={set("env")} aria-invalid={invalid("env")} />{problem("env")}</label>
        <label className="field">Volumes<span className="hint">NAME:/path[:ro] (a named volume) or /host/path:/path[:ro], one per line</span>
          <textarea name="volumes" rows={3} value={f.volumes} onChange={set("volumes")} aria-invalid={invalid("volumes")} />{problem("volumes")}</label>
        <label className="field">Memory limit<span className="hint">e.g. 64Mi, 1Gi; empty: none</span>
          <input name="memory" value={f.memory} onChange={set("memory")} aria-invalid={invalid("memory")} />{problem("memory")}</label>
        <label className="field">CPU limit<span className="hint">cores, e.g. 0.5; empty: none</span>
          <input name="cpu" value={f.cpu} onChange={set("cpu")} aria-invalid={invalid("cpu")} />{problem("cpu")}</label>
        <label className="field">Replicas
          <input name="replicas" type="number" min={0} value={f.replicas} onChange={set("replicas")} aria-invalid={invalid("replicas")} />{problem("replicas")}</label>
        <label className="field">Restart policy
          <select name="restart" value={f.restart} onChange={set("restart")}>
            <option value="always">always</option><option value="on-failure">on-failure</option><option value="no">no</option>
          </select>{problem("restart")}</label>
        <label className="field wide">HTTP health check path<span className="hint">checked on the first port every 2 s, e.g. / or /healthz; empty: none</span>
          <input name="health" value={f.health} onChange={set("health")} aria-invalid={invalid("health")} placeholder="/healthz" />{problem("health")}</label>
      </div>
      {problem("other")}
      <ErrorBox error={error} />
      <div className="row">
        <button className="btn primary" type="submit" disabled={busy}>{busy && <Spinner />} Create service</button>
        <button className="btn" type="button" onClick={() => onYaml(stringify(buildSpec(f).spec))}>Edit as YAML</button>
        <span className="muted">The YAML editor takes every other key (cmd, healthcheck exec, user …).</span>
      </div>
    </form>
  );
}
