// Command plan drives the ledger of a running Tessera network with the generated Go client: it lists the
// organizations, takes the event stream's current position as a cursor, registers a compute plan with one task
// (on assets registered beforehand, e.g. with the substra SDK), follows the events from the cursor until the task
// ends, and prints the task's performance.
//
//	go run ./examples/plan -asset 127.0.0.1:7702 -org MyOrg1MSP -secret "$SECRET" \
//	    -function <key> -data-manager <key> -samples <key>[,<key>...]
//
// With mutual TLS, give -cert, -key and -ca instead of -secret.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	assetv1 "tessera.dev/clients/go/gen/tessera/asset/v1"
	"tessera.dev/clients/go/tessera"
)

func main() {
	asset := flag.String("asset", "127.0.0.1:7702", "address of the ledger (asset service)")
	org := flag.String("org", "MyOrg1MSP", "organization to act as")
	orgSecret := flag.String("secret", os.Getenv("TESSERA_ORG_SECRET"), "the organization's dev-network secret")
	cert := flag.String("cert", "", "client certificate (PEM), for mutual TLS")
	key := flag.String("key", "", "client key (PEM), for mutual TLS")
	ca := flag.String("ca", "", "the network's CA (PEM), for mutual TLS")
	channel := flag.String("channel", "", "channel (empty: the organization's first)")
	function := flag.String("function", "", "key of a READY function with opener/datasamples inputs and a performance output")
	dataManager := flag.String("data-manager", "", "key of the data manager")
	samples := flag.String("samples", "", "comma-separated data sample keys")
	worker := flag.String("worker", "", "organization that runs the task (default: -org)")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after this long")
	flag.Parse()
	if *worker == "" {
		*worker = *org
	}

	var options []grpc.DialOption
	if *cert != "" {
		var err error
		if options, err = tessera.WithClientCertificate(*cert, *key, *ca, *channel); err != nil {
			log.Fatal(err)
		}
	} else {
		options = tessera.WithSecret(*org, *orgSecret, *channel)
	}
	conn, err := grpc.NewClient(*asset, options...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ledger := assetv1.NewAssetServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	orgs, err := ledger.ListOrganizations(ctx, &assetv1.ListOrganizationsRequest{})
	if err != nil {
		log.Fatalf("ListOrganizations: %v", err)
	}
	for _, o := range orgs.GetOrganizations() {
		fmt.Printf("organization %s current=%t\n", o.GetId(), o.GetIsCurrent())
	}
	if *function == "" {
		return
	}

	// The cursor: the position of the newest event now; the stream below replays what follows it.
	newest, err := ledger.QueryEvents(ctx, &assetv1.QueryEventsRequest{PageSize: 1, Descending: true})
	if err != nil {
		log.Fatalf("QueryEvents: %v", err)
	}
	var cursor int64
	if events := newest.GetEvents(); len(events) > 0 {
		cursor = events[0].GetPosition()
	}
	fmt.Printf("cursor %d\n", cursor)

	plan, err := ledger.RegisterComputePlan(ctx, &assetv1.RegisterComputePlanRequest{
		Key: uuid.NewString(), Name: "go client example",
	})
	if err != nil {
		log.Fatalf("RegisterComputePlan: %v", err)
	}
	inputs := []*assetv1.NewComputeTaskInput{{Identifier: "opener", AssetKey: *dataManager}}
	for _, sample := range strings.Split(*samples, ",") {
		inputs = append(inputs, &assetv1.NewComputeTaskInput{Identifier: "datasamples", AssetKey: sample})
	}
	taskKey := uuid.NewString()
	_, err = ledger.RegisterTasks(ctx, &assetv1.RegisterTasksRequest{Tasks: []*assetv1.NewComputeTask{{
		Key:            taskKey,
		ComputePlanKey: plan.GetComputePlan().GetKey(),
		FunctionKey:    *function,
		Worker:         *worker,
		Inputs:         inputs,
		Outputs: map[string]*assetv1.NewComputeTaskOutput{
			"performance": {Permissions: &assetv1.NewPermissions{Public: true}},
		},
	}}})
	if err != nil {
		log.Fatalf("RegisterTasks: %v", err)
	}
	fmt.Printf("plan %s task %s\n", plan.GetComputePlan().GetKey(), taskKey)

	status, performance, err := follow(ctx, ledger, cursor, taskKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("task %s %s\n", taskKey, status)
	if status != assetv1.ComputeTaskStatus_STATUS_DONE {
		os.Exit(1)
	}
	fmt.Printf("performance %g\n", performance)
}

// follow reads the ledger's events after cursor until the task reaches a final status; it returns that status
// and the performance the task registered.
func follow(ctx context.Context, ledger assetv1.AssetServiceClient, cursor int64, taskKey string) (
	assetv1.ComputeTaskStatus, float32, error,
) {
	stream, err := ledger.SubscribeEvents(ctx, &assetv1.SubscribeEventsRequest{AfterPosition: cursor})
	if err != nil {
		return 0, 0, fmt.Errorf("SubscribeEvents: %w", err)
	}
	var performance float32
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, 0, errors.New("the event stream ended before the task did")
		}
		if err != nil {
			return 0, 0, fmt.Errorf("event stream: %w", err)
		}
		event := response.GetEvent()
		fmt.Printf("event %d %s %s %s\n", event.GetPosition(), event.GetAssetKind(), event.GetEventKind(), event.GetAssetKey())
		if p := event.GetPerformance(); p != nil && p.GetComputeTaskKey() == taskKey {
			performance = p.GetPerformanceValue()
		}
		if task := event.GetComputeTask(); task != nil && task.GetKey() == taskKey {
			switch status := task.GetStatus(); status {
			case assetv1.ComputeTaskStatus_STATUS_DONE, assetv1.ComputeTaskStatus_STATUS_FAILED,
				assetv1.ComputeTaskStatus_STATUS_CANCELED:
				return status, performance, nil
			}
		}
	}
}
