// Package tessera connects the generated Go client (tessera.dev/clients/go/gen/...) to a Tessera service with an
// organization's credential, the way the services check it (services/kit/identity.py):
//
//   - the dev network: every call carries "authorization: Basic base64(<org>:<secret>)" over plaintext;
//   - production: mutual TLS, the organization being the common name of the client certificate.
//
// Either way the call may name its channel in "x-tessera-channel" (empty: the organization's first channel).
package tessera

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ChannelHeader names the channel a call acts in.
const ChannelHeader = "x-tessera-channel"

// secret is the dev network's per-call credential.
type secret struct {
	header  string
	channel string
}

// GetRequestMetadata adds the organization's header (and the channel) to every call.
func (s secret) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	md := map[string]string{"authorization": s.header}
	if s.channel != "" {
		md[ChannelHeader] = s.channel
	}
	return md, nil
}

// RequireTransportSecurity is false: the dev network speaks plaintext on loopback.
func (secret) RequireTransportSecurity() bool { return false }

// channelOnly carries the channel header alone (mutual TLS already names the organization).
type channelOnly string

func (c channelOnly) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{ChannelHeader: string(c)}, nil
}

func (channelOnly) RequireTransportSecurity() bool { return true }

// WithSecret dials plaintext and sends the dev network's organization secret on every call.
func WithSecret(org, orgSecret, channel string) []grpc.DialOption {
	token := base64.StdEncoding.EncodeToString([]byte(org + ":" + orgSecret))
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(secret{header: "Basic " + token, channel: channel}),
	}
}

// WithClientCertificate dials with mutual TLS: certFile/keyFile are the organization's PEM certificate and key,
// caFile the network's CA that signed the servers' certificates.
func WithClientCertificate(certFile, keyFile, caFile, channel string) ([]grpc.DialOption, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA: no certificate in %s", caFile)
	}
	options := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      roots,
		MinVersion:   tls.VersionTLS12,
	}))}
	if channel != "" {
		options = append(options, grpc.WithPerRPCCredentials(channelOnly(channel)))
	}
	return options, nil
}
