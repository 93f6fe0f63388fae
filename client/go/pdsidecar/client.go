package pdsidecar

import (
	"context"
	"errors"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/pdsidecar/pdsidecar/client/go/pdsidecarv1"
)

// serviceConfig: gRPC's own retry machinery retries the unary calls'
// UNAVAILABLE (the sidecar restarting, a dropped connection) with backoff,
// inside each call's deadline. Not WatchCredentials: a CredentialsSource
// reopens it itself, honouring RetryInfo. Three attempts, not SPEC's five:
// grpc-go queues each retried attempt until the next connection attempt, so
// without wait-for-ready five attempts at an absent sidecar take ~1.5 s
// before the error; three take ~0.5 s.
const serviceConfig = `{"methodConfig": [{
  "name": [{"service": "pdsidecar.v1.CredentialsService", "method": "GetCredentials"},
    {"service": "pdsidecar.v1.CredentialsService", "method": "ValidateAccount"},
    {"service": "pdsidecar.v1.CredentialsService", "method": "RefreshToken"},
    {"service": "pdsidecar.v1.CredentialsService", "method": "ListAccounts"}],
  "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "2s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`

// probeTimeout bounds the health check that asks gRPC for its last
// connection error after a call failed unconnected.
const probeTimeout = time.Second

// Client calls the sidecar's CredentialsService. It is safe for concurrent use;
// make one per process and Close it when done.
type Client struct {
	conn     *grpc.ClientConn
	stub     pb.CredentialsServiceClient
	target   string
	settings settings
}

// Dial makes a Client for target: "host:port", or "unix:/path" for a Unix
// socket. Like grpc.NewClient it does not connect yet: the first call does.
// ctx is not used to connect; it is there for the options that may one day
// need it.
func Dial(_ context.Context, target string, opts ...Option) (*Client, error) {
	s := defaults()
	for _, opt := range opts {
		opt(&s)
	}
	if s.err != nil {
		return nil, s.err
	}
	if (s.certPEM == nil) != (s.keyPEM == nil) {
		return nil, errors.New("pdsidecar: a client certificate and its key go together")
	}
	transport := insecure.NewCredentials()
	if s.usesTLS() {
		config, err := s.tlsConfig()
		if err != nil {
			return nil, err
		}
		transport = credentials.NewTLS(config)
	}
	dialOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithDefaultServiceConfig(serviceConfig),
		// Reconnect quickly after a sidecar restart.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if s.apiToken != "" {
		if !s.usesTLS() && !isLocal(target) {
			return nil, errors.New("pdsidecar: refusing to send the API token in plaintext to " +
				target + ": use TLS (WithTLS), a loopback address or a Unix socket")
		}
		dialOptions = append(dialOptions, grpc.WithPerRPCCredentials(bearer(s.apiToken)))
	}
	conn, err := grpc.NewClient(target, append(dialOptions, s.dialOptions...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, stub: pb.NewCredentialsServiceClient(conn), target: target, settings: s}, nil
}

// Close closes the connection; calls in flight fail CANCELLED.
func (c *Client) Close() error { return c.conn.Close() }

// Target is the address the client was dialled with.
func (c *Client) Target() string { return c.target }

// call runs one unary RPC with the client's deadline and wait-for-ready, and
// returns its failure as an *Error.
func call[Req, Resp any](ctx context.Context, c *Client, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	started := time.Now()
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.settings.deadline)
		defer cancel()
	}
	resp, err := rpc(ctx, req, grpc.WaitForReady(c.settings.waitForReady))
	if err != nil {
		return resp, c.failure(asError(err), time.Since(started))
	}
	return resp, nil
}

// failure adds the connection hint to a failure that never reached the sidecar.
func (c *Client) failure(e *Error, waited time.Duration) *Error {
	if !mayBeUnconnected(e) {
		return e
	}
	var last string
	if e.Code == codes.DeadlineExceeded {
		if c.conn.GetState() == connectivity.Ready {
			return e // connected: the sidecar was slow, which the message says
		}
		last = c.lastConnectionError()
	} else {
		last = lastError(e.Message)
	}
	e.Hint = notConnected(c.target, waited, last, c.settings.usesTLS(), c.settings.waitForReady)
	return e
}

// lastConnectionError asks gRPC for its last connection error with one health
// check made without wait-for-ready (the service config names only the
// credentials service, so it is not retried): it fails at once with it.
func (c *Client) lastConnectionError() string {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	_, err := grpc_health_v1.NewHealthClient(c.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if e := asError(err); err != nil && e.Code == codes.Unavailable {
		return lastError(e.Message)
	}
	return ""
}

// GetOption adjusts one GetCredentials call.
type GetOption func(*pb.GetCredentialsRequest)

// Rejecting says the source refused token (401): the sidecar answers with
// another value if Pipedream has one (rejected_access_token).
func Rejecting(token string) GetOption {
	return func(req *pb.GetCredentialsRequest) { req.RejectedAccessToken = token }
}

// GetCredentials returns the account's credentials for a source.
func (c *Client) GetCredentials(ctx context.Context, ref AccountRef, opts ...GetOption) (*Credentials, error) {
	req := ref.getRequest()
	for _, opt := range opts {
		opt(req)
	}
	resp, err := call(ctx, c, c.stub.GetCredentials, req)
	if err != nil {
		return nil, err
	}
	return newCredentials(resp.GetCredentials(), resp.GetExpiresAt(), resp.GetAccount()), nil
}

// ValidateAccount checks that the account can serve the source; problems with
// the account come back as data (resp.Problems), not as errors.
func (c *Client) ValidateAccount(ctx context.Context, ref AccountRef) (*pb.ValidateAccountResponse, error) {
	return call(ctx, c, c.stub.ValidateAccount, &pb.ValidateAccountRequest{
		Account: ref.account(), Source: ref.Source,
		RequiredFields: ref.RequiredFields, OptionalFields: ref.OptionalFields,
	})
}

// RefreshToken refreshes a connection's Pipedream API token ("" is the
// default connection); force refreshes even when not yet due.
func (c *Client) RefreshToken(ctx context.Context, connection string, force bool) (*pb.RefreshTokenResponse, error) {
	return call(ctx, c, c.stub.RefreshToken, &pb.RefreshTokenRequest{Connection: connection, Force: force})
}

// ListAccounts iterates over the project's accounts a page at a time, each page
// one call (with its own deadline), from query.PageToken (the first page when
// ""); an error ends the iteration:
//
//	for page, err := range client.ListAccounts(ctx, query) {
//		if err != nil { return err }
//		for _, account := range page { ... }
//	}
func (c *Client) ListAccounts(ctx context.Context, query AccountQuery) iter.Seq2[[]*pb.AccountInfo, error] {
	return func(yield func([]*pb.AccountInfo, error) bool) {
		req := query.proto()
		for {
			resp, err := call(ctx, c, c.stub.ListAccounts, req)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(resp.GetAccounts(), nil) || resp.GetNextPageToken() == "" {
				return
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
}
