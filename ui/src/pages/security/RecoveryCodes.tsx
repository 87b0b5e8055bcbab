// Recovery codes as the API returns them, shown once: copy, download as text, and a plain warning.
import { Card } from "../../components/ui";
import { CopyButton, DownloadButton } from "./copy";

export function recoveryCodesText(username: string, codes: string[], host: string): string {
  return [
    `Infra-Core recovery codes for ${username} on ${host}`,
    "Each code logs in once in place of the authenticator app's code.",
    "",
    ...codes,
    "",
  ].join("\n");
}

export function RecoveryCodesPanel({ username, codes, onDone }: { username: string; codes: string[]; onDone: () => void }) {
  const text = recoveryCodesText(username, codes, window.location.host);
  return (
    <Card title={`Recovery codes for ${username}`} className="recovery">
      <div className="stack" data-testid="recovery-codes">
        <p className="warn-box" role="alert">
          <strong>Shown once.</strong> Save these now (print, password manager): they are not shown again. Each works
          once in place of an authenticator code if the phone is lost; making new ones voids these.
        </p>
        <ol className="codes mono">{codes.map((c) => <li key={c} data-testid="recovery-code">{c}</li>)}</ol>
        <div className="row">
          <CopyButton text={codes.join("\n")} label="Copy codes" />
          <DownloadButton text={text} filename={`infracore-recovery-codes-${username}.txt`} label="Download as text" />
          <button type="button" className="btn small primary" onClick={onDone}>I have saved them</button>
        </div>
      </div>
    </Card>
  );
}
