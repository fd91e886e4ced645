// Drives the ledger of a running Tessera network with the generated TypeScript client: lists the organizations,
// takes the event stream's current position as a cursor, registers a compute plan with one task (on assets
// registered beforehand, e.g. with the substra SDK), follows the events from the cursor until the task ends, and
// prints the task's performance.
//
//   node dist/examples/plan.js --asset 127.0.0.1:7702 --org MyOrg1MSP --secret "$SECRET" \
//       --function <key> --data-manager <key> --samples <key>[,<key>...]
//
// With mutual TLS, give --cert, --key and --ca instead of --secret.
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { AssetService, tesseraClient, type Credential } from "../src/index.js";
import { AssetKind, ComputeTaskStatus } from "../src/gen/tessera/asset/v1/resources_pb.js";
import { EventKind } from "../src/gen/tessera/asset/v1/events_pb.js";

const { values: args } = parseArgs({
  options: {
    asset: { type: "string", default: "127.0.0.1:7702" },
    org: { type: "string", default: "MyOrg1MSP" },
    secret: { type: "string", default: process.env.TESSERA_ORG_SECRET ?? "" },
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    channel: { type: "string" },
    function: { type: "string" },
    "data-manager": { type: "string", default: "" },
    samples: { type: "string", default: "" },
    worker: { type: "string" },
    "timeout-seconds": { type: "string", default: "180" },
  },
});

const FINAL = new Set([ComputeTaskStatus.STATUS_DONE, ComputeTaskStatus.STATUS_FAILED, ComputeTaskStatus.STATUS_CANCELED]);

async function main(): Promise<number> {
  const credential: Credential = args.cert
    ? { cert: args.cert, key: args.key ?? "", ca: args.ca ?? "", channel: args.channel }
    : { org: args.org!, secret: args.secret!, channel: args.channel };
  const ledger = tesseraClient(AssetService, args.asset!, credential);
  const signal = AbortSignal.timeout(Number(args["timeout-seconds"]) * 1000);

  const { organizations } = await ledger.listOrganizations({}, { signal });
  for (const o of organizations) console.log(`organization ${o.id} current=${o.isCurrent}`);
  if (!args.function) return 0;

  // The cursor: the position of the newest event now; the stream below replays what follows it.
  const newest = await ledger.queryEvents({ pageSize: 1, descending: true }, { signal });
  const cursor = newest.events[0]?.position ?? 0n;
  console.log(`cursor ${cursor}`);

  const { computePlan } = await ledger.registerComputePlan({ key: randomUUID(), name: "ts client example" }, { signal });
  const taskKey = randomUUID();
  await ledger.registerTasks(
    {
      tasks: [
        {
          key: taskKey,
          computePlanKey: computePlan!.key,
          functionKey: args.function,
          worker: args.worker ?? args.org!,
          inputs: [
            { identifier: "opener", assetKey: args["data-manager"] },
            ...args.samples!.split(",").map((assetKey) => ({ identifier: "datasamples", assetKey })),
          ],
          outputs: { performance: { permissions: { public: true } } },
        },
      ],
    },
    { signal },
  );
  console.log(`plan ${computePlan!.key} task ${taskKey}`);

  let performance: number | undefined;
  for await (const { event } of ledger.subscribeEvents({ afterPosition: cursor }, { signal })) {
    if (!event) continue;
    console.log(`event ${event.position} ${AssetKind[event.assetKind]} ${EventKind[event.eventKind]} ${event.assetKey}`);
    const asset = event.asset;
    if (asset.case === "performance" && asset.value.computeTaskKey === taskKey) performance = asset.value.performanceValue;
    if (asset.case === "computeTask" && asset.value.key === taskKey && FINAL.has(asset.value.status)) {
      console.log(`task ${taskKey} ${ComputeTaskStatus[asset.value.status]}`);
      if (asset.value.status !== ComputeTaskStatus.STATUS_DONE) return 1;
      console.log(`performance ${performance}`);
      return 0;
    }
  }
  console.error("the event stream ended before the task did");
  return 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
