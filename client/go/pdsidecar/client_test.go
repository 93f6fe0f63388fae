package pdsidecar

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/pdsidecar/pdsidecar/client/go/pdsidecarv1"
)

var ref = AccountRef{ProjectID: "proj_x", AccountID: "apn_x", Source: "notion"}

func TestErrorCarriesReasonRetryDelayAndViolations(t *testing.T) {
	f := newFake("t1")
	f.get = func(*pb.GetCredentialsRequest) (string, error) {
		return "", richError(codes.ResourceExhausted, "RATE_LIMITED", 1500*time.Millisecond, "account.project_id")
	}
	client := serve(t, f)
	_, err := client.GetCredentials(context.Background(), ref)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %v", err)
	}
	if e.Code != codes.ResourceExhausted || e.Reason != "RATE_LIMITED" || e.RetryDelay != 1500*time.Millisecond {
		t.Fatalf("read %+v", e)
	}
	if len(e.Violations) != 1 || e.Violations[0].Field != "account.project_id" || e.Metadata["account"] != "apn_x" {
		t.Fatalf("details %+v", e)
	}
	if e.Hint != "" {
		t.Fatalf("the sidecar answered, yet a connection hint: %q", e.Hint)
	}
	if status.Code(err) != codes.ResourceExhausted || CodeName(e.Code) != "RESOURCE_EXHAUSTED" {
		t.Fatalf("status.Code reads %v", status.Code(err))
	}
}

func TestUnreachableTargetFailsFastWithAHintNamingIt(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := listener.Addr().String()
	_ = listener.Close() // nothing listens there now
	client, err := Dial(context.Background(), target, WithWaitForReady(false))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	started := time.Now()
	_, err = client.GetCredentials(context.Background(), ref)
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE, got %v", err)
	}
	if !strings.Contains(e.Hint, target) || !strings.Contains(e.Hint, "nothing listens there") {
		t.Fatalf("hint %q", e.Hint)
	}
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Fatalf("took %s to fail without wait-for-ready", elapsed)
	}
}

func TestDeadlineWhileWaitingForReadyNamesTheTarget(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := listener.Addr().String()
	_ = listener.Close()
	client, err := Dial(context.Background(), target, WithDefaultDeadline(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, err = client.RefreshToken(context.Background(), "", false)
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.DeadlineExceeded {
		t.Fatalf("want DEADLINE_EXCEEDED, got %v", err)
	}
	if !strings.Contains(e.Hint, "waited") || !strings.Contains(e.Hint, target) {
		t.Fatalf("hint %q", e.Hint)
	}
}

func TestAPITokenIsSentAsBearerAndNeverInPlaintextOffTheMachine(t *testing.T) {
	f := newFake("t1")
	client := serve(t, f, WithAPIToken("sekret-for-test"))
	if _, err := client.GetCredentials(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	auth := f.lastAuth
	f.mu.Unlock()
	if len(auth) != 1 || auth[0] != "Bearer sekret-for-test" {
		t.Fatalf("authorization %q", auth)
	}
	_, err := Dial(context.Background(), "10.1.2.3:50051", WithAPIToken("sekret-for-test"))
	if err == nil || !strings.Contains(err.Error(), "plaintext") || strings.Contains(err.Error(), "sekret") {
		t.Fatalf("want a refusal that names no secret, got %v", err)
	}
	for _, local := range []string{"unix:/run/pdsidecar.sock", "127.0.0.1:50051", "[::1]:50051", "localhost:50051"} {
		c, err := Dial(context.Background(), local, WithAPIToken("sekret-for-test"))
		if err != nil {
			t.Fatalf("%s: %v", local, err)
		}
		_ = c.Close()
	}
}

func TestListAccountsIteratesOverPagesAndStopsWhenAsked(t *testing.T) {
	f := newFake("t1")
	f.accounts = 5
	client := serve(t, f)
	var ids []string
	pages := 0
	for page, err := range client.ListAccounts(context.Background(), AccountQuery{ProjectID: "proj_x", PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, a := range page {
			ids = append(ids, a.GetAccountId())
		}
	}
	if pages != 3 || strings.Join(ids, "") != "abcde" {
		t.Fatalf("%d pages, ids %v", pages, ids)
	}
	pages = 0
	for range client.ListAccounts(context.Background(), AccountQuery{ProjectID: "proj_x", PageSize: 2}) {
		pages++
		break
	}
	if pages != 1 {
		t.Fatalf("break did not stop the iteration: %d pages", pages)
	}
	ids = nil
	for page, err := range client.ListAccounts(context.Background(), AccountQuery{ProjectID: "proj_x", PageSize: 2, PageToken: "2"}) {
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page {
			ids = append(ids, a.GetAccountId())
		}
	}
	if strings.Join(ids, "") != "cde" {
		t.Fatalf("from a kept page token: %v", ids)
	}
}

func TestCredentialsPrintNoValue(t *testing.T) {
	c := newCredentials(map[string]string{"access_token": "sekret-for-test"}, nil, nil)
	for _, text := range []string{c.String(), c.GoString()} {
		if strings.Contains(text, "sekret") {
			t.Fatalf("printed a value: %s", text)
		}
	}
}
