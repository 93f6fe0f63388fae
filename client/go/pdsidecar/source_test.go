package pdsidecar

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/pdsidecar/pdsidecar/client/go/pdsidecarv1"
)

func newSource(t *testing.T, client *Client) *CredentialsSource {
	t.Helper()
	source, err := NewCredentialsSource(context.Background(), client, ref, WithReconnectBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = source.Close() })
	return source
}

func token(t *testing.T, source *CredentialsSource) string {
	t.Helper()
	value, err := source.AccessToken()
	if err != nil {
		t.Fatalf("read failed: %v", err)
	}
	return value
}

// waitFor reads after each Updated signal until the token is want.
func waitFor(t *testing.T, source *CredentialsSource, want string) {
	t.Helper()
	for token(t, source) != want {
		within(t, source.Updated(), "the value "+want)
	}
}

func TestSourceHoldsTheFirstValueOnReturnAndFollowsRotations(t *testing.T) {
	f := newFake("t1")
	source := newSource(t, serve(t, f))
	if got := token(t, source); got != "t1" {
		t.Fatalf("first value %q", got)
	}
	f.rotate("t2")
	waitFor(t, source, "t2")
	creds, err := source.Credentials()
	if err != nil || creds.Fields["workspace"] != "w" || creds.AccessToken != "t2" {
		t.Fatalf("credentials %v, %v", creds, err)
	}
}

func TestSourceReconnectsAfterUnavailableAndReadsNeverFail(t *testing.T) {
	f := newFake("t1")
	source := newSource(t, serve(t, f))
	within(t, f.opened, "the first stream")
	f.end(richError(codes.Unavailable, "SIDECAR_STOPPING", 0))
	// Meanwhile the old value stands.
	if got := token(t, source); got != "t1" {
		t.Fatalf("read %q while reconnecting", got)
	}
	within(t, f.opened, "the reopened stream")
	f.end(richError(codes.ResourceExhausted, "TOO_MANY_WATCHERS", 5*time.Millisecond))
	within(t, f.opened, "the stream reopened after RetryInfo")
	f.rotate("t2")
	waitFor(t, source, "t2")
	if n := source.Reconnects(); n != 2 {
		t.Fatalf("%d reconnects, want 2", n)
	}
}

func TestAccountProblemSurfacesOnTheNextRead(t *testing.T) {
	f := newFake("t1")
	source := newSource(t, serve(t, f))
	within(t, f.opened, "the first stream")
	f.end(richError(codes.FailedPrecondition, "ACCOUNT_DEAD", 0))
	_, err := source.AccessToken()
	for err == nil {
		within(t, source.Updated(), "the end of the watch")
		_, err = source.AccessToken()
	}
	var e *Error
	if !errors.As(err, &e) || e.Reason != "ACCOUNT_DEAD" || e.Code != codes.FailedPrecondition {
		t.Fatalf("read after ACCOUNT_DEAD: %v", err)
	}
	if source.Reconnects() != 0 {
		t.Fatal("reopened a stream the account ended")
	}
}

func TestSourceFailsWithTheAccountErrorWhenTheFirstValueCannotCome(t *testing.T) {
	f := newFake("t1")
	f.openError = richError(codes.FailedPrecondition, "ACCOUNT_DEAD", 0)
	_, err := NewCredentialsSource(context.Background(), serve(t, f), ref)
	var e *Error
	if !errors.As(err, &e) || e.Reason != "ACCOUNT_DEAD" {
		t.Fatalf("got %v", err)
	}
}

func TestSourceWithoutFirstValueInTimeSaysTheLastError(t *testing.T) {
	f := newFake("t1")
	f.openError = richError(codes.Unavailable, "UPSTREAM_UNAVAILABLE", time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := NewCredentialsSource(ctx, serve(t, f), ref)
	var e *Error
	if !errors.As(err, &e) || e.Reason != "UPSTREAM_UNAVAILABLE" || e.Code != codes.Unavailable {
		t.Fatalf("got %v", err)
	}
}

func TestRejectReturnsADifferentValueAndALateRejectedOneDoesNotWinBack(t *testing.T) {
	f := newFake("t1")
	f.get = func(req *pb.GetCredentialsRequest) (string, error) {
		if req.GetRejectedAccessToken() != "t1" {
			t.Errorf("rejected %q", req.GetRejectedAccessToken())
		}
		return "t2", nil
	}
	source := newSource(t, serve(t, f))
	creds, err := source.Reject(context.Background(), "t1")
	if err != nil || creds.AccessToken != "t2" || token(t, source) != "t2" {
		t.Fatalf("reject gave %v, %v", creds, err)
	}
	// The stream still carries t1 (sent before the refetch), then t3.
	f.rotate("t1")
	f.rotate("t3")
	waitFor(t, source, "t3")
	// A token already rotated past is answered at once, without a call.
	f.get = nil
	if creds, err := source.Reject(context.Background(), "t1"); err != nil || creds.AccessToken != "t3" {
		t.Fatalf("stale reject gave %v, %v", creds, err)
	}
}

func TestRejectFailsAtTheDeadlineWhenNoOtherValueComes(t *testing.T) {
	f := newFake("t1")
	source := newSource(t, serve(t, f))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := source.Reject(ctx, "t1") // the fake answers t1 again
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.DeadlineExceeded {
		t.Fatalf("got %v", err)
	}
	if token(t, source) != "t1" {
		t.Fatal("the source lost its value")
	}
}

func TestCloseEndsTheStreamAndLaterReadsSayCancelled(t *testing.T) {
	f := newFake("t1")
	source := newSource(t, serve(t, f))
	if err := source.Close(); err != nil {
		t.Fatal(err)
	}
	within(t, f.gone, "the server to see the stream end")
	_, err := source.AccessToken()
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.Canceled {
		t.Fatalf("read after close: %v", err)
	}
	_ = source.Close() // twice is fine
}
