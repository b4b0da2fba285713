/** RFC 9457 problem documents: the one shape of every error the API answers. */

import { jsonText } from "../text/printable.ts";

const PROBLEM = "application/problem+json";

const REASONS: Readonly<Record<number, string>> = {
  403: "Forbidden",
  408: "Request Timeout",
  421: "Misdirected Request",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
};

function document(status: number, title: string, detail: string, extra: Record<string, unknown> = {}) {
  return jsonText({ type: "about:blank", title, status, detail, ...extra });
}

/** A problem answer, for the app. */
export function problem(
  status: number,
  title: string,
  detail: string,
  extra: Record<string, unknown> = {},
): Response {
  return new Response(document(status, title, detail, extra), {
    status,
    headers: { "content-type": PROBLEM },
  });
}

/** A whole HTTP/1.1 problem answer that closes the connection, for a listener answering by itself. */
export function problemBytes(status: number, title: string, detail: string): Uint8Array<ArrayBuffer> {
  const body = new TextEncoder().encode(document(status, title, detail));
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\ncontent-type: ${PROBLEM}\r\n` +
    `content-length: ${body.byteLength}\r\nconnection: close\r\n\r\n`;
  const bytes = new Uint8Array(head.length + body.byteLength);
  bytes.set(new TextEncoder().encode(head));
  bytes.set(body, head.length);
  return bytes;
}
