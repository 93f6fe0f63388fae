// Command pdsidecar-example calls the pdsidecar CredentialsService from Go and
// prints one line per answer, in the format every language's example shares:
//
//	credentials access_token=<token> fields=<names,...>
//	valid=<true|false> problems=<REASON,...>
//	refreshed=<true|false> expires_at=<RFC 3339, UTC>
//	watch access_token=<token> expires_at=<RFC 3339, UTC>
//	error code=<GRPC_CODE> reason=<ErrorInfo reason or ->
//
// Errors are read the rich-error way: the google.rpc.Status in the
// grpc-status-details-bin trailer carries an ErrorInfo (the reason) and, for
// RATE_LIMITED and UPSTREAM_UNAVAILABLE, a RetryInfo: the call is retried
// after that delay, up to --attempts times. Calls without RetryInfo are not
// retried.
//
// watch opens WatchCredentials and prints a line for the first value and for
// every rotation after it (--count N: stop after N lines). A stream ending
// UNAVAILABLE (the sidecar restarting) is opened again; any other error ends it.
//
// Usage:
//
//	pdsidecar-example [--target HOST:PORT] get      --project P --account A --source S
//	pdsidecar-example [--target HOST:PORT] validate --project P --account A --source S
//	pdsidecar-example [--target HOST:PORT] refresh  [--connection C] [--force]
//	pdsidecar-example [--target HOST:PORT] watch    --project P --account A --source S [--count N]
//
// Flags fall back to PDSIDECAR_TARGET (default 127.0.0.1:50051),
// PDSIDECAR_PROJECT, PDSIDECAR_ACCOUNT, PDSIDECAR_SOURCE and
// PDSIDECAR_CONNECTION.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pdsidecarv1 "github.com/pdsidecar/pdsidecar/client/go/pdsidecarv1"
)

const (
	callTimeout   = 10 * time.Second
	maxRetryDelay = 30 * time.Second
)

type options struct {
	target, project, account, source, connection string
	force                                        bool
	attempts, count                              int
}

func env(name, fallback string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return fallback
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pdsidecar-example [--target HOST:PORT] {get|validate|refresh|watch} [flags]")
}

func flags() *flag.FlagSet {
	fs := flag.NewFlagSet("pdsidecar-example", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) (string, options, error) {
	var o options
	fs.StringVar(&o.target, "target", env("PDSIDECAR_TARGET", "127.0.0.1:50051"), "sidecar address")
	fs.StringVar(&o.project, "project", env("PDSIDECAR_PROJECT", ""), "Pipedream project id (proj_...)")
	fs.StringVar(&o.account, "account", env("PDSIDECAR_ACCOUNT", ""), "connected account id (apn_...)")
	fs.StringVar(&o.source, "source", env("PDSIDECAR_SOURCE", ""), "source short name, e.g. notion")
	fs.StringVar(&o.connection, "connection", env("PDSIDECAR_CONNECTION", "default"), "connection name")
	fs.BoolVar(&o.force, "force", false, "refresh: refresh even when not yet due")
	fs.IntVar(&o.attempts, "attempts", 3, "attempts per call when the sidecar sends RetryInfo")
	fs.IntVar(&o.count, "count", 0, "watch: stop after this many values (0: never)")
	// Flags may come before and after the command.
	if err := fs.Parse(args); err != nil {
		return "", o, err
	}
	if fs.NArg() == 0 {
		return "", o, errors.New("missing command")
	}
	command := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return "", o, err
	}
	if fs.NArg() != 0 {
		return "", o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.attempts < 1 {
		o.attempts = 1
	}
	return command, o, nil
}

func accountRef(o options) *pdsidecarv1.AccountRef {
	return &pdsidecarv1.AccountRef{Connection: o.connection, ProjectId: o.project, AccountId: o.account}
}

// codeNames are the canonical gRPC code names (Go's String() says "Canceled").
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// callError is what a failed call says: its code, ErrorInfo reason and
// RetryInfo delay (0 when absent), and BadRequest field violations.
type callError struct {
	code       codes.Code
	reason     string
	retryDelay time.Duration
	message    string
	violations []string
}

func readError(err error) callError {
	st := status.Convert(err)
	ce := callError{code: st.Code(), reason: "-", message: st.Message()}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			ce.reason = d.GetReason()
		case *errdetails.RetryInfo:
			ce.retryDelay = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				ce.violations = append(ce.violations, v.GetField()+": "+v.GetDescription())
			}
		}
	}
	return ce
}

// call runs one RPC with a deadline, retrying after RetryInfo's delay.
func call[T any](o options, rpc func(context.Context) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		resp, err := rpc(ctx)
		cancel()
		if err == nil {
			return resp, nil
		}
		ce := readError(err)
		if ce.retryDelay <= 0 || attempt >= o.attempts {
			return resp, err
		}
		delay := min(ce.retryDelay, maxRetryDelay)
		fmt.Fprintf(os.Stderr, "retrying in %.3fs: code=%s reason=%s (attempt %d of %d)\n",
			delay.Seconds(), codeNames[ce.code], ce.reason, attempt, o.attempts)
		time.Sleep(delay)
	}
}

func rfc3339(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Truncate(time.Second).Format(time.RFC3339)
}

func run(command string, o options, client pdsidecarv1.CredentialsServiceClient) error {
	switch command {
	case "get":
		resp, err := call(o, func(ctx context.Context) (*pdsidecarv1.GetCredentialsResponse, error) {
			return client.GetCredentials(ctx, &pdsidecarv1.GetCredentialsRequest{Account: accountRef(o), Source: o.source})
		})
		if err != nil {
			return err
		}
		fields := make([]string, 0, len(resp.GetCredentials()))
		for name := range resp.GetCredentials() {
			fields = append(fields, name)
		}
		sort.Strings(fields)
		fmt.Printf("credentials access_token=%s fields=%s\n",
			resp.GetCredentials()["access_token"], strings.Join(fields, ","))
	case "validate":
		resp, err := call(o, func(ctx context.Context) (*pdsidecarv1.ValidateAccountResponse, error) {
			return client.ValidateAccount(ctx, &pdsidecarv1.ValidateAccountRequest{Account: accountRef(o), Source: o.source})
		})
		if err != nil {
			return err
		}
		problems := make([]string, 0, len(resp.GetProblems()))
		for _, p := range resp.GetProblems() {
			problems = append(problems, strings.TrimPrefix(p.GetReason().String(), "REASON_"))
		}
		fmt.Printf("valid=%t problems=%s\n", resp.GetValid(), strings.Join(problems, ","))
	case "refresh":
		resp, err := call(o, func(ctx context.Context) (*pdsidecarv1.RefreshTokenResponse, error) {
			return client.RefreshToken(ctx, &pdsidecarv1.RefreshTokenRequest{Connection: o.connection, Force: o.force})
		})
		if err != nil {
			return err
		}
		fmt.Printf("refreshed=%t expires_at=%s\n", resp.GetRefreshed(), rfc3339(resp.GetExpiresAt()))
	case "watch":
		return watch(o, client)
	default:
		return fmt.Errorf("unknown command %q", command)
	}
	return nil
}

// watch prints every value of the account's credentials as the sidecar pushes
// it. The stream has no deadline: it lives as long as the sync does.
func watch(o options, client pdsidecarv1.CredentialsServiceClient) error {
	request := &pdsidecarv1.WatchCredentialsRequest{Account: accountRef(o), Source: o.source}
	printed := 0
	for {
		stream, err := client.WatchCredentials(context.Background(), request, grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				if status.Code(err) != codes.Unavailable {
					return err
				}
				ce := readError(err)
				fmt.Fprintf(os.Stderr, "stream ended UNAVAILABLE (reason=%s); reconnecting\n", ce.reason)
				time.Sleep(100 * time.Millisecond)
				break
			}
			fmt.Printf("watch access_token=%s expires_at=%s\n",
				resp.GetCredentials()["access_token"], rfc3339(resp.GetExpiresAt()))
			printed++
			if o.count > 0 && printed >= o.count {
				return nil
			}
		}
	}
}

func main() {
	fs := flags()
	command, o, err := parse(fs, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		// --help is a request, not a mistake: usage and flags on stdout, exit 0.
		usage(os.Stdout)
		fmt.Println("commands: get, validate, refresh, watch; flags:")
		fs.SetOutput(os.Stdout)
		fs.PrintDefaults()
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pdsidecar-example: %v\n", err)
		usage(os.Stderr)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(o.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "pdsidecar-example: %v\n", err)
		os.Exit(2)
	}
	defer conn.Close()

	err = run(command, o, pdsidecarv1.NewCredentialsServiceClient(conn))
	if err == nil {
		return
	}
	if _, isStatus := status.FromError(err); !isStatus {
		fmt.Fprintf(os.Stderr, "pdsidecar-example: %v\n", err)
		usage(os.Stderr)
		conn.Close()
		os.Exit(2)
	}
	ce := readError(err)
	fmt.Printf("error code=%s reason=%s\n", codeNames[ce.code], ce.reason)
	fmt.Fprintf(os.Stderr, "message: %s\n", ce.message)
	for _, v := range ce.violations {
		fmt.Fprintf(os.Stderr, "violation: %s\n", v)
	}
	conn.Close()
	os.Exit(1)
}
