// The platform's email module: `import { email } from "<site>/std/email.ts"`.
// Mail always goes to the user the val runs as; the host decides, never the val.

const hostCall = (globalThis as any)[Symbol.for("valtown.host.call")];

export interface EmailMessage {
  subject: string;
  text?: string;
  html?: string;
}

export async function email(message: EmailMessage): Promise<{ sent: true; to: string }> {
  if (typeof hostCall !== "function") throw new Error("email() only works inside a val run by the platform");
  return await hostCall("email.send", message);
}

export default email;
