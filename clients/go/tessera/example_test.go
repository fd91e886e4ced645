package tessera_test

import (
	"context"
	"log"

	"google.golang.org/grpc"

	assetv1 "tessera.dev/clients/go/gen/tessera/asset/v1"
	"tessera.dev/clients/go/tessera"
)

// The dev network: the organization's secret from .devnet/credentials/<org>.secret, sent on every call.
func ExampleWithSecret() {
	conn, err := grpc.NewClient("127.0.0.1:7702", tessera.WithSecret("MyOrg1MSP", "<secret>", "")...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	orgs, err := assetv1.NewAssetServiceClient(conn).ListOrganizations(context.Background(), &assetv1.ListOrganizationsRequest{})
	if err != nil {
		log.Fatal(err)
	}
	log.Println(orgs.GetOrganizations())
}

// Production: mutual TLS; the ledger names the organization from the certificate's common name.
func ExampleWithClientCertificate() {
	options, err := tessera.WithClientCertificate("org1.crt", "org1.key", "ca.crt", "mychannel")
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("ledger.example.org:443", options...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	_ = assetv1.NewAssetServiceClient(conn)
}
