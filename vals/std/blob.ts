// The platform's key-value store: `import { blob } from "<site>/std/blob.ts"`.
//
// Each user has one store. A val always reads and writes the store of whoever it runs
// as (the host decides, never the val): there is no way to name anyone else's.
//
//   await blob.set("greeting", "hello");            // a string comes back as a string
//   await blob.set("logo.png", bytes);              // Uint8Array, ArrayBuffer or Blob: a Uint8Array
//   await blob.get("greeting");                     // "hello", or null if there is no such key
//   await blob.setJSON("state", { count: 1 });
//   await blob.getJSON("state");                    // { count: 1 }, or undefined if there is no such key
//   await blob.list("logs/");                       // [{ key, size, updatedAt }], in key order
//   await blob.delete("greeting");                  // true if the key existed
//
// Keys are non-empty strings of at most 512 characters (any characters but NUL; "/" is
// just a character). Values are at most 700,000 bytes, and a store holds 50 MB in all
// (the defaults: BLOB_MAX_KEY_LENGTH, BLOB_MAX_VALUE_BYTES, BLOB_QUOTA_BYTES).

const hostCall = (globalThis as any)[Symbol.for("valtown.host.call")];

export interface BlobInfo {
  key: string;
  /** The value's size in bytes (a string's in UTF-8). */
  size: number;
  /** When the value was last set, as an ISO 8601 string. */
  updatedAt: string;
}

export type BlobValue = string | Uint8Array;
export type BlobInput = string | ArrayBuffer | ArrayBufferView | Blob;

interface Encoded {
  base64: string;
  text: boolean;
}

function call(op: string, payload: Record<string, unknown>): Promise<any> {
  if (typeof hostCall !== "function") throw new Error(`blob.${op}() only works inside a val run by the platform`);
  return hostCall(`blob.${op}`, payload);
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function decode(encoded: Encoded): BlobValue {
  const bytes = fromBase64(encoded.base64);
  return encoded.text ? new TextDecoder().decode(bytes) : bytes;
}

async function bytesOf(value: BlobInput): Promise<{ bytes: Uint8Array; text: boolean }> {
  if (typeof value === "string") return { bytes: new TextEncoder().encode(value), text: true };
  if (value instanceof ArrayBuffer) return { bytes: new Uint8Array(value), text: false };
  if (ArrayBuffer.isView(value)) return { bytes: new Uint8Array(value.buffer, value.byteOffset, value.byteLength), text: false };
  if (typeof Blob !== "undefined" && value instanceof Blob) return { bytes: new Uint8Array(await value.arrayBuffer()), text: false };
  throw new TypeError("blob.set() takes a string, Uint8Array, ArrayBuffer or Blob; use blob.setJSON() for other values");
}

/** The value stored at `key`: a string if a string was stored, else a Uint8Array; null if none. */
export async function get(key: string): Promise<BlobValue | null> {
  const reply: Encoded | null = await call("get", { key });
  return reply === null ? null : decode(reply);
}

/** Stores `value` at `key`, replacing what was there. */
export async function set(key: string, value: BlobInput): Promise<void> {
  const { bytes, text } = await bytesOf(value);
  try {
    await call("set", { key, base64: toBase64(bytes), text });
  } catch (error) {
    if (/payload too large/.test(String((error as Error)?.message))) {
      throw new Error(`blob value too large: ${bytes.length.toLocaleString("en")} bytes is more than one host call carries`);
    }
    throw error;
  }
}

/** Deletes `key`; true if it existed. */
export async function del(key: string): Promise<boolean> {
  const reply = await call("delete", { key });
  return reply.deleted;
}

/** Every key starting with `prefix` (all keys if none), in key order. */
export async function list(prefix = ""): Promise<BlobInfo[]> {
  const found: BlobInfo[] = [];
  let after: string | null = null;
  do {
    const page: { blobs: BlobInfo[]; next: string | null } = await call("list", { prefix, after });
    found.push(...page.blobs);
    after = page.next;
  } while (after !== null);
  return found;
}

/** The JSON value stored at `key`, parsed; undefined if there is no such key. */
export async function getJSON(key: string): Promise<any> {
  const value = await get(key);
  if (value === null) return undefined;
  return JSON.parse(typeof value === "string" ? value : new TextDecoder().decode(value));
}

/** Stores `value` at `key` as JSON. */
export async function setJSON(key: string, value: unknown): Promise<void> {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError("blob.setJSON() needs a value JSON can represent");
  await set(key, text);
}

export { del as delete };

export const blob = { get, set, delete: del, list, getJSON, setJSON };

export default blob;
