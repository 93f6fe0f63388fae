package pdsidecar

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/pdsidecar/pdsidecar/client/go/pdsidecarv1"
)

// fakeSidecar is an in-process CredentialsService whose watch streams the
// test drives: rotate pushes a value to every open stream, end closes them
// all with an error.
type fakeSidecar struct {
	pb.UnimplementedCredentialsServiceServer

	mu        sync.Mutex
	token     string
	watches   []chan step
	openError error                                           // WatchCredentials fails at once with it
	get       func(*pb.GetCredentialsRequest) (string, error) // GetCredentials' token, or error
	accounts  int
	lastAuth  []string
	opened    chan struct{} // one signal per WatchCredentials call
	gone      chan struct{} // one signal per stream the client went away from
}

type step struct {
	token string
	err   error
}

func newFake(token string) *fakeSidecar {
	return &fakeSidecar{token: token, opened: make(chan struct{}, 100), gone: make(chan struct{}, 100)}
}

func response(token string) *pb.WatchCredentialsResponse {
	return &pb.WatchCredentialsResponse{Credentials: map[string]string{"access_token": token, "workspace": "w"}}
}

func (f *fakeSidecar) WatchCredentials(_ *pb.WatchCredentialsRequest, stream grpc.ServerStreamingServer[pb.WatchCredentialsResponse]) error {
	f.mu.Lock()
	if f.openError != nil {
		err := f.openError
		f.mu.Unlock()
		f.opened <- struct{}{}
		return err
	}
	steps := make(chan step, 16)
	f.watches = append(f.watches, steps)
	token := f.token
	f.mu.Unlock()
	f.opened <- struct{}{}
	if err := stream.Send(response(token)); err != nil {
		return err
	}
	for {
		select {
		case s := <-steps:
			if s.err != nil {
				return s.err
			}
			if err := stream.Send(response(s.token)); err != nil {
				return err
			}
		case <-stream.Context().Done():
			f.gone <- struct{}{}
			return nil
		}
	}
}

func (f *fakeSidecar) rotate(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.token = token
	for _, w := range f.watches {
		w <- step{token: token}
	}
}

// end closes every open stream with err.
func (f *fakeSidecar) end(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watches {
		w <- step{err: err}
	}
	f.watches = nil
}

func (f *fakeSidecar) GetCredentials(ctx context.Context, req *pb.GetCredentialsRequest) (*pb.GetCredentialsResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.lastAuth = md.Get("authorization")
	get, token := f.get, f.token
	f.mu.Unlock()
	if get != nil {
		var err error
		if token, err = get(req); err != nil {
			return nil, err
		}
	}
	return &pb.GetCredentialsResponse{Credentials: map[string]string{"access_token": token}}, nil
}

func (f *fakeSidecar) ListAccounts(_ context.Context, req *pb.ListAccountsRequest) (*pb.ListAccountsResponse, error) {
	start := 0
	if req.GetPageToken() != "" {
		start = int(req.GetPageToken()[0] - '0')
	}
	end := min(start+int(req.GetPageSize()), f.accounts)
	resp := &pb.ListAccountsResponse{}
	for i := start; i < end; i++ {
		resp.Accounts = append(resp.Accounts, &pb.AccountInfo{AccountId: string(rune('a' + i))})
	}
	if end < f.accounts {
		resp.NextPageToken = string(rune('0' + end))
	}
	return resp, nil
}

// serve starts the fake on an in-memory listener and dials it.
func serve(t testing.TB, f *fakeSidecar, opts ...Option) *Client {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	pb.RegisterCredentialsServiceServer(server, f)
	go func() { _ = server.Serve(listener) }()
	dialer := func(ctx context.Context, _ string) (net.Conn, error) { return listener.DialContext(ctx) }
	opts = append([]Option{WithGRPCDialOptions(grpc.WithContextDialer(dialer))}, opts...)
	client, err := Dial(context.Background(), "passthrough:///localhost", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		server.Stop()
	})
	return client
}

// richError is a status as the sidecar sends it.
func richError(code codes.Code, reason string, retry time.Duration, violations ...string) error {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Domain: Domain, Reason: reason, Metadata: map[string]string{"account": "apn_x"}}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if len(violations) > 0 {
		bad := &errdetails.BadRequest{}
		for _, field := range violations {
			bad.FieldViolations = append(bad.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: field, Description: "bad " + field})
		}
		details = append(details, bad)
	}
	st, err := status.New(code, reason+" happened").WithDetails(details...)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// within fails the test when ch gives nothing in a generous bound: it is a
// guard against a hang, not a synchronisation.
func within[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
