// The service spec editor: YAML with line numbers, problems shown at their line as the person types
// (syntax, structure) and after an apply (the server's validation), before anything changes.
import { useMemo, useRef, useState } from "react";
import { api, ApiError, unwrap, type Schemas } from "../api/client";
import { hunks, lineDiff } from "../lib/lineDiff";
import { byLine, localProblems, serverProblems, type Problem } from "../lib/yamlErrors";
import { ActionButton, ErrorBox } from "./ui";

export function SpecEditor({ initial, filename = "spec.yaml", onApplied }: {
  initial: string; filename?: string; onApplied: (r: Schemas["ServiceApplied"]) => void;
}) {
  const [text, setText] = useState(initial);
  const [server, setServer] = useState<Problem[]>([]);
  const [error, setError] = useState<unknown>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const local = useMemo(() => localProblems(text), [text]);
  const problems = [...local, ...server];
  const marks = byLine(problems);
  const lines = text.split("\n").length;
  const blocking = local.some((p) => p.source === "yaml");

  function jump(line: number | null) {
    const ta = area.current;
    if (!ta || line == null) return;
    const offset = text.split("\n").slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
    ta.focus();
    ta.setSelectionRange(offset, offset);
  }

  async function apply() {
    setError(null);
    setServer([]);
    try {
      const r = await unwrap(api.POST("/api/services", { body: { yaml: text, filename } as never }));
      onApplied(r);
    } catch (e) {
      if (e instanceof ApiError) {
        const mapped = serverProblems(text, e.details);
        if (mapped.length) {
          setServer(mapped);
          return;
        }
      }
      setError(e);
    }
  }

  return (
    <div className="stack">
      <div className="editor" aria-label="Service spec (YAML)">
        <div className="gutter" aria-hidden>
          {Array.from({ length: lines }, (_, i) => (
            <div key={i} className={marks.has(i + 1) ? "bad" : ""} title={marks.get(i + 1)?.map((p) => p.message).join("\n")}>{i + 1}</div>
          ))}
        </div>
        <textarea
          ref={area}
          aria-label="Spec YAML"
          spellCheck={false}
          value={text}
          rows={Math.max(12, lines + 1)}
          onChange={(e) => { setText(e.target.value); setServer([]); }}
        />
      </div>
      {problems.length > 0 && (
        <ul className="problems" aria-label="Problems">
          {problems.map((p, i) => (
            <li key={i} className={p.source === "check" ? "check" : ""}>
              <button type="button" className="btn small" onClick={() => jump(p.line)}>line {p.line ?? "?"}</button>{" "}
              {p.field && <code>{p.field}</code>} {p.message}
            </li>
          ))}
        </ul>
      )}
      {text !== initial && initial.trim() !== "" && (
        <details className="more">
          <summary>Changes against the applied version</summary>
          <pre className="logview" style={{ height: "auto", maxHeight: 260 }} aria-label="Changes">
            {hunks(lineDiff(initial, text)).map((d, k) => d === "gap" ? <div key={k} className="muted">⋯</div> : (
              <div key={k} style={{ color: d.kind === "add" ? "var(--ok)" : d.kind === "del" ? "var(--bad)" : undefined }}>
                {d.kind === "add" ? "+ " : d.kind === "del" ? "- " : "  "}{d.text}
              </div>
            ))}
          </pre>
        </details>
      )}
      <ErrorBox error={error} />
      <div className="row">
        <ActionButton kind="primary" onAction={apply} disabled={blocking} title={blocking ? "fix the YAML first" : undefined}>Apply</ActionButton>
        <span className="muted">Applying makes a new version; the previous ones stay listed.</span>
      </div>
    </div>
  );
}
