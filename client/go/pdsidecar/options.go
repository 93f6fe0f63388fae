package pdsidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// DefaultDeadline bounds every unary call whose context has no deadline.
const DefaultDeadline = 10 * time.Second

// Option configures [Dial].
type Option func(*settings)

type settings struct {
	caPEM, certPEM, keyPEM []byte
	serverName             string
	apiToken               string
	deadline               time.Duration
	waitForReady           bool
	dialOptions            []grpc.DialOption
	err                    error
}

func defaults() settings {
	return settings{deadline: DefaultDeadline, waitForReady: true}
}

func (s *settings) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// readPEM takes a path to a PEM file, or the PEM bytes themselves.
func readPEM(value, name string) ([]byte, error) {
	if strings.Contains(value, "-----BEGIN ") {
		return []byte(value), nil
	}
	data, err := os.ReadFile(value)
	if err != nil {
		return nil, fmt.Errorf("pdsidecar: %s: %w", name, err)
	}
	return data, nil
}

// WithTLS connects over TLS, trusting the CA that signed the sidecar's
// certificate (a PEM file path, or the PEM text).
func WithTLS(ca string) Option {
	return func(s *settings) {
		pem, err := readPEM(ca, "TLS CA")
		s.fail(err)
		s.caPEM = pem
	}
}

// WithClientCertificate adds a client certificate and its key (PEM file paths
// or PEM text) for a listener started with --tls-client-ca (mutual TLS).
// It implies TLS; without WithTLS the system roots verify the server.
func WithClientCertificate(cert, key string) Option {
	return func(s *settings) {
		var err error
		s.certPEM, err = readPEM(cert, "client certificate")
		s.fail(err)
		s.keyPEM, err = readPEM(key, "client key")
		s.fail(err)
	}
}

// WithServerName is the name to expect in the server certificate when the
// target does not name it (a Unix socket, an IP address).
func WithServerName(name string) Option { return func(s *settings) { s.serverName = name } }

// WithAPIToken sends "authorization: Bearer TOKEN" with every call (the
// sidecar's --api-token). Dial refuses to send it in plaintext to an address
// other than loopback or a Unix socket: use TLS there.
func WithAPIToken(token string) Option { return func(s *settings) { s.apiToken = token } }

// WithDefaultDeadline bounds every unary call whose context has no deadline
// (DefaultDeadline if not given). It also bounds NewCredentialsSource's wait
// for its first value when that context has none.
func WithDefaultDeadline(d time.Duration) Option { return func(s *settings) { s.deadline = d } }

// WithWaitForReady sets gRPC's wait-for-ready (on by default): on, a call made
// while the sidecar restarts waits for it, up to the deadline; off, a call to
// an unreachable sidecar fails at once, UNAVAILABLE, with a hint.
func WithWaitForReady(on bool) Option { return func(s *settings) { s.waitForReady = on } }

// WithGRPCDialOptions passes extra options to grpc.NewClient (interceptors,
// stats handlers, a custom dialer).
func WithGRPCDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) { s.dialOptions = append(s.dialOptions, opts...) }
}

func (s *settings) usesTLS() bool { return s.caPEM != nil || s.certPEM != nil }

func (s *settings) tlsConfig() (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.serverName}
	if s.caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(s.caPEM) {
			return nil, errors.New("pdsidecar: the TLS CA holds no PEM certificate")
		}
		config.RootCAs = pool
	}
	if s.certPEM != nil {
		pair, err := tls.X509KeyPair(s.certPEM, s.keyPEM)
		if err != nil {
			return nil, fmt.Errorf("pdsidecar: client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// isLocal says whether a target stays on this machine (a Unix socket or loopback).
func isLocal(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	// dns:///host:port, passthrough:///host:port
	if _, rest, found := strings.Cut(target, ":///"); found {
		target = rest
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer sends the API token as per-RPC metadata.
type bearer string

func (b bearer) GetRequestMetadata(_ context.Context, _ ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: Dial already refused a token in plaintext
// to anything but loopback or a Unix socket.
func (bearer) RequireTransportSecurity() bool { return false }
