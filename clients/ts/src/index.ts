// The TypeScript client of the Tessera gRPC API: the generated descriptors (./gen, by protoc-gen-es) plus a
// gRPC transport for Node carrying an organization's credential the way the services check it
// (services/kit/identity.py): the dev network's "authorization: Basic base64(<org>:<secret>)" over plaintext,
// or mutual TLS, where the organization is the common name of the client certificate.
import { readFileSync } from "node:fs";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";

export { AssetService } from "./gen/tessera/asset/v1/asset_service_pb.js";
export { StorageService } from "./gen/tessera/storage/v1/storage_service_pb.js";
export { ComputeService } from "./gen/tessera/compute/v1/compute_service_pb.js";
export { EventService } from "./gen/tessera/event/v1/event_service_pb.js";

/** The header that names the channel a call acts in (absent: the organization's first channel). */
export const CHANNEL_HEADER = "x-tessera-channel";

/** How an organization proves itself: the dev network's secret, or a client certificate (PEM files). */
export type Credential =
  | { org: string; secret: string; channel?: string }
  | { cert: string; key: string; ca: string; channel?: string };

function withHeaders(headers: Record<string, string>): Interceptor {
  return (next) => async (request) => {
    for (const [name, value] of Object.entries(headers)) request.header.set(name, value);
    return next(request);
  };
}

/** A gRPC transport to `address` ("host:port") that sends `credential` on every call. */
export function tesseraTransport(address: string, credential: Credential): Transport {
  const headers: Record<string, string> = credential.channel ? { [CHANNEL_HEADER]: credential.channel } : {};
  if ("secret" in credential) {
    const token = Buffer.from(`${credential.org}:${credential.secret}`).toString("base64");
    headers.authorization = `Basic ${token}`;
    return createGrpcTransport({ baseUrl: `http://${address}`, interceptors: [withHeaders(headers)] });
  }
  return createGrpcTransport({
    baseUrl: `https://${address}`,
    interceptors: [withHeaders(headers)],
    nodeOptions: {
      cert: readFileSync(credential.cert),
      key: readFileSync(credential.key),
      ca: readFileSync(credential.ca),
    },
  });
}

/** A typed client of `service` (e.g. AssetService) at `address`, acting as the credential's organization. */
export function tesseraClient<T extends DescService>(service: T, address: string, credential: Credential): Client<T> {
  return createClient(service, tesseraTransport(address, credential));
}
